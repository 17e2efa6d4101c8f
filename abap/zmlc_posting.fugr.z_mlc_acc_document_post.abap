FUNCTION z_mlc_acc_document_post.
*"----------------------------------------------------------------------
*" ml-connector: post an FI document and commit it in ONE LUW.
*" Remote-enabled (RFC). Same interface as BAPI_ACC_DOCUMENT_POST, so the
*" client builds identical parameters for POST, CHECK and this wrapper.
*"
*"  IMPORTING
*"     VALUE(DOCUMENTHEADER) TYPE  BAPIACHE09
*"     VALUE(CUSTOMERCPD) TYPE  BAPIACPA09 OPTIONAL
*"     VALUE(CONTRACTHEADER) TYPE  BAPIACCAHD OPTIONAL
*"  EXPORTING
*"     VALUE(OBJ_TYPE) TYPE  BAPIACHE09-OBJ_TYPE
*"     VALUE(OBJ_KEY) TYPE  BAPIACHE09-OBJ_KEY
*"     VALUE(OBJ_SYS) TYPE  BAPIACHE09-OBJ_SYS
*"  TABLES
*"      ACCOUNTGL STRUCTURE  BAPIACGL09 OPTIONAL
*"      ACCOUNTRECEIVABLE STRUCTURE  BAPIACAR09 OPTIONAL
*"      ACCOUNTPAYABLE STRUCTURE  BAPIACAP09 OPTIONAL
*"      ACCOUNTTAX STRUCTURE  BAPIACTX09 OPTIONAL
*"      CURRENCYAMOUNT STRUCTURE  BAPIACCR09
*"      EXTENSION1 STRUCTURE  BAPIACEXTC OPTIONAL
*"      EXTENSION2 STRUCTURE  BAPIPAREX OPTIONAL
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: lv_belnr  TYPE bkpf-belnr,
        lv_gjahr  TYPE bkpf-gjahr,
        lv_varkey TYPE rstable-varkey,
        ls_return TYPE bapiret2,
        ls_commit TYPE bapiret2.

  CLEAR: obj_type, obj_key, obj_sys.
  REFRESH return.

* 1. Serialize postings with the same reference (XBLNR) in this company code.
  IF documentheader-ref_doc_no IS NOT INITIAL.
    CONCATENATE sy-mandt documentheader-comp_code documentheader-ref_doc_no
      INTO lv_varkey RESPECTING BLANKS.
    CALL FUNCTION 'ENQUEUE_E_TABLE'
      EXPORTING
        mode_rstable   = 'E'
        tabname        = 'BKPF'
        varkey         = lv_varkey
        _wait          = 'X'
      EXCEPTIONS
        foreign_lock   = 1
        system_failure = 2
        OTHERS         = 3.
    IF sy-subrc <> 0.
      ls_return-type       = 'E'.
      ls_return-id         = sy-msgid.
      ls_return-number     = sy-msgno.
      ls_return-message_v1 = sy-msgv1.
      ls_return-parameter  = 'DOCUMENTHEADER'.
      ls_return-row        = 1.
      ls_return-field      = 'REF_DOC_NO'.
      MESSAGE ID sy-msgid TYPE 'E' NUMBER sy-msgno
        WITH sy-msgv1 sy-msgv2 sy-msgv3 sy-msgv4 INTO ls_return-message.
      APPEND ls_return TO return.
      obj_key = '$'.
      RETURN.
    ENDIF.

*   2. Duplicate guard: a live (not reversed) document with this XBLNR exists.
    SELECT SINGLE belnr gjahr FROM bkpf INTO (lv_belnr, lv_gjahr)
      WHERE bukrs = documentheader-comp_code
        AND xblnr = documentheader-ref_doc_no
        AND stblg = space.
    IF sy-subrc = 0.
      ls_return-type       = 'E'.
      ls_return-id         = 'ZMLC'.
      ls_return-number     = '001'.
      ls_return-message_v1 = documentheader-ref_doc_no.
      ls_return-message_v2 = lv_belnr.
      ls_return-message_v3 = documentheader-comp_code.
      ls_return-message_v4 = lv_gjahr.
      ls_return-parameter  = 'DOCUMENTHEADER'.
      ls_return-row        = 1.
      ls_return-field      = 'REF_DOC_NO'.
      CONCATENATE 'Document with reference' documentheader-ref_doc_no 'already posted:'
                  lv_belnr documentheader-comp_code lv_gjahr
        INTO ls_return-message SEPARATED BY space.
      APPEND ls_return TO return.
      obj_key = '$'.
      CALL FUNCTION 'DEQUEUE_E_TABLE'
        EXPORTING mode_rstable = 'E' tabname = 'BKPF' varkey = lv_varkey.
      RETURN.
    ENDIF.
  ENDIF.

* 3. Post (document number assigned, update task registered).
  CALL FUNCTION 'BAPI_ACC_DOCUMENT_POST'
    EXPORTING
      documentheader    = documentheader
      customercpd       = customercpd
      contractheader    = contractheader
    IMPORTING
      obj_type          = obj_type
      obj_key           = obj_key
      obj_sys           = obj_sys
    TABLES
      accountgl         = accountgl
      accountreceivable = accountreceivable
      accountpayable    = accountpayable
      accounttax        = accounttax
      currencyamount    = currencyamount
      extension1        = extension1
      extension2        = extension2
      return            = return.

* 4. Commit synchronously in the same session, or roll back.
  LOOP AT return TRANSPORTING NO FIELDS WHERE type CA 'AEX'.
    EXIT.
  ENDLOOP.
  IF sy-subrc = 0.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
    obj_key = '$'.
  ELSE.
    CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
      EXPORTING
        wait   = 'X'
      IMPORTING
        return = ls_commit.
    IF ls_commit-type CA 'AEX'.
      APPEND ls_commit TO return.
    ENDIF.
  ENDIF.

  IF lv_varkey IS NOT INITIAL.
    CALL FUNCTION 'DEQUEUE_E_TABLE'
      EXPORTING mode_rstable = 'E' tabname = 'BKPF' varkey = lv_varkey.
  ENDIF.
ENDFUNCTION.
