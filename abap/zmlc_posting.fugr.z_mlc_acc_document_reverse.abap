FUNCTION z_mlc_acc_document_reverse.
*"----------------------------------------------------------------------
*" ml-connector: reverse one FI document (FB08) and commit in ONE LUW.
*" Remote-enabled (RFC). Idempotent by the document's own state: a
*" document already reversed answers E ZMLC 005 with the reversal in V4.
*" The FI document of an MM invoice (AWTYP RMRP) is refused with E ZMLC 012:
*" it is reversed in MM (Z_MLC_INCOMINGINVOICE_CANCEL).
*"
*"  IMPORTING
*"     VALUE(I_BUKRS) TYPE  BKPF-BUKRS
*"     VALUE(I_BELNR) TYPE  BKPF-BELNR
*"     VALUE(I_GJAHR) TYPE  BKPF-GJAHR
*"     VALUE(I_BUDAT) TYPE  BKPF-BUDAT OPTIONAL
*"     VALUE(I_STGRD) TYPE  BKPF-STGRD DEFAULT '01'
*"  EXPORTING
*"     VALUE(E_STBLG) TYPE  BKPF-STBLG
*"     VALUE(E_STJAH) TYPE  BKPF-STJAH
*"  TABLES
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: ls_bkpf   TYPE bkpf,
        lv_budat  TYPE bkpf-budat,
        lv_cleared TYPE i,
        ls_return TYPE bapiret2.

  REFRESH return.
  CLEAR: e_stblg, e_stjah.

  CALL FUNCTION 'ENQUEUE_EFBKPF'
    EXPORTING
      bukrs          = i_bukrs
      belnr          = i_belnr
      gjahr          = i_gjahr
    EXCEPTIONS
      foreign_lock   = 1
      OTHERS         = 2.
  IF sy-subrc <> 0.
    ls_return-type = 'E'. ls_return-id = 'MC'. ls_return-number = '601'.
    ls_return-message_v1 = sy-msgv1. ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
    RETURN.
  ENDIF.

  SELECT SINGLE * FROM bkpf INTO ls_bkpf
    WHERE bukrs = i_bukrs AND belnr = i_belnr AND gjahr = i_gjahr.
  IF sy-subrc <> 0.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '002'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
    ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ELSEIF ls_bkpf-awtyp = 'RMRP'.
*   The FI document of an MM (logistics) invoice: SAP reverses it only in MM (MR8M,
*   Z_MLC_INCOMINGINVOICE_CANCEL), which reverses this document too. Refused here rather than
*   leaving it to FB08's own refusal, so the caller gets one known message. V4 = invoice + year.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '012'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
    CONCATENATE ls_bkpf-awkey(10) ls_bkpf-awkey+10(4) INTO ls_return-message_v4 SEPARATED BY space.
    ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ELSEIF ls_bkpf-stblg IS NOT INITIAL.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '005'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
    ls_return-message_v4 = ls_bkpf-stblg. ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ELSE.
    SELECT COUNT(*) FROM bsak INTO lv_cleared
      WHERE bukrs = i_bukrs AND belnr = i_belnr AND gjahr = i_gjahr.
    IF lv_cleared > 0.
      ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '006'.
      ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
      ls_return-parameter = 'I_BELNR'.
      APPEND ls_return TO return.
    ENDIF.
  ENDIF.
  IF return[] IS NOT INITIAL.
    CALL FUNCTION 'DEQUEUE_EFBKPF'
      EXPORTING bukrs = i_bukrs belnr = i_belnr gjahr = i_gjahr.
    RETURN.
  ENDIF.

  lv_budat = i_budat.
  IF lv_budat IS INITIAL.
    lv_budat = ls_bkpf-budat.
  ENDIF.
* CALL_FB08 runs FB08 in batch input mode; its messages come back in SY-MSG*.
  CALL FUNCTION 'CALL_FB08'
    EXPORTING
      i_bukrs      = i_bukrs
      i_belnr      = i_belnr
      i_gjahr      = i_gjahr
      i_stgrd      = i_stgrd
      i_budat      = lv_budat
    EXCEPTIONS
      not_possible = 1
      OTHERS       = 2.
  IF sy-subrc <> 0.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
    ls_return-type = 'E'. ls_return-id = sy-msgid. ls_return-number = sy-msgno.
    ls_return-message_v1 = sy-msgv1. ls_return-message_v2 = sy-msgv2.
    ls_return-message_v3 = sy-msgv3. ls_return-message_v4 = sy-msgv4.
    ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ELSE.
    CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
      EXPORTING
        wait = 'X'.
    SELECT SINGLE stblg stjah FROM bkpf INTO (e_stblg, e_stjah)
      WHERE bukrs = i_bukrs AND belnr = i_belnr AND gjahr = i_gjahr.
    ls_return-type = 'S'. ls_return-id = 'ZMLC'. ls_return-number = '008'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
    ls_return-message_v4 = e_stblg.
    APPEND ls_return TO return.
  ENDIF.
  CALL FUNCTION 'DEQUEUE_EFBKPF'
    EXPORTING bukrs = i_bukrs belnr = i_belnr gjahr = i_gjahr.
ENDFUNCTION.
