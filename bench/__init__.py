"""Benchmarks of ml-connector against the sandbox emulators (`make bench`)."""
