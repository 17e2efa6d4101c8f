FUNCTION z_mlc_document_by_xblnr.
*"----------------------------------------------------------------------
*" ml-connector: read-only lookup of accounting documents by reference.
*" Remote-enabled (RFC). Used to resolve uncertain posting outcomes.
*"
*"  IMPORTING
*"     VALUE(I_BUKRS) TYPE  BKPF-BUKRS
*"     VALUE(I_XBLNR) TYPE  BKPF-XBLNR
*"     VALUE(I_GJAHR) TYPE  BKPF-GJAHR OPTIONAL
*"  TABLES
*"      ET_DOCUMENTS STRUCTURE  ZMLC_S_DOCREF
*"----------------------------------------------------------------------
* ZMLC_S_DOCREF: BUKRS, BELNR, GJAHR, XBLNR, STBLG, BLART, BUDAT, AWTYP, AWKEY
* (all typed with the BKPF data elements).
  REFRESH et_documents.
  IF i_gjahr IS INITIAL.
    SELECT bukrs belnr gjahr xblnr stblg blart budat awtyp awkey
      FROM bkpf INTO CORRESPONDING FIELDS OF TABLE et_documents
      WHERE bukrs = i_bukrs
        AND xblnr = i_xblnr.
  ELSE.
    SELECT bukrs belnr gjahr xblnr stblg blart budat awtyp awkey
      FROM bkpf INTO CORRESPONDING FIELDS OF TABLE et_documents
      WHERE bukrs = i_bukrs
        AND gjahr = i_gjahr
        AND xblnr = i_xblnr.
  ENDIF.
ENDFUNCTION.
