"""A separately packaged system or flow, as pip would install it: a `.dist-info` directory whose
entry_points.txt names it, on a directory put on PYTHONPATH (importlib.metadata finds it there)."""

from __future__ import annotations

from pathlib import Path


def write_dist_info(site: Path, dist: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """`site/<dist>-0.1.dist-info` declaring `entry_points` ({group: {name: value}}); returns `site`."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    lines = []
    for group, names in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in names.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return site
