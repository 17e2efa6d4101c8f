FUNCTION z_mlc_incominginvoice_create.
*"----------------------------------------------------------------------
*" ml-connector: create an MM (logistics) invoice and commit it in ONE LUW.
*" Remote-enabled (RFC).
*"
*"  IMPORTING
*"     VALUE(HEADERDATA) TYPE  BAPI_INCINV_CREATE_HEADER
*"     VALUE(ADDRESSDATA) TYPE  BAPI_INCINV_CREATE_ADDRESSDATA OPTIONAL
*"  EXPORTING
*"     VALUE(INVOICEDOCNUMBER) TYPE  BAPI_INCINV_FLD-INV_DOC_NO
*"     VALUE(FISCALYEAR) TYPE  BAPI_INCINV_FLD-FISC_YEAR
*"     VALUE(ACCOUNTING_DOC) TYPE  BKPF-BELNR
*"  TABLES
*"      ITEMDATA STRUCTURE  BAPI_INCINV_CREATE_ITEM
*"      ACCOUNTINGDATA STRUCTURE  BAPI_INCINV_CREATE_ACCOUNT OPTIONAL
*"      GLACCOUNTDATA STRUCTURE  BAPI_INCINV_CREATE_GL_ACCOUNT OPTIONAL
*"      TAXDATA STRUCTURE  BAPI_INCINV_CREATE_TAX OPTIONAL
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: lv_belnr  TYPE bkpf-belnr,
        lv_gjahr  TYPE bkpf-gjahr,
        lv_awkey  TYPE bkpf-awkey,
        lv_awtyp  TYPE bkpf-awtyp,
        lv_stblg  TYPE rbkp-stblg,
        lv_rbelnr TYPE rbkp-belnr,
        lv_rgjahr TYPE rbkp-gjahr,
        lv_found  TYPE abap_bool,
        lv_varkey TYPE rstable-varkey,
        ls_return TYPE bapiret2,
        ls_commit TYPE bapiret2.

  CLEAR: invoicedocnumber, fiscalyear, accounting_doc.
  REFRESH return.

* 1. Serialize postings with the same reference (XBLNR) in this company code. Same lock
*    argument as Z_MLC_ACC_DOCUMENT_POST (BKPF + client + company code + XBLNR), so an FI
*    posting and an MM invoice with the same reference serialize too. Held until after the
*    commit: two concurrent calls cannot both pass the duplicate guard.
  IF headerdata-ref_doc_no IS NOT INITIAL.
    CONCATENATE sy-mandt headerdata-comp_code headerdata-ref_doc_no
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
      ls_return-parameter  = 'HEADERDATA'.
      ls_return-row        = 1.
      ls_return-field      = 'REF_DOC_NO'.
      MESSAGE ID sy-msgid TYPE 'E' NUMBER sy-msgno
        WITH sy-msgv1 sy-msgv2 sy-msgv3 sy-msgv4 INTO ls_return-message.
      APPEND ls_return TO return.
      RETURN.
    ENDIF.

*   2. Duplicate guard on the reference (XBLNR) of the FI follow-on document. An FI document
*      of an MM invoice reversed by MR8M does not count, whether or not MR8M also filled its
*      BKPF-STBLG (not verified): the invoice's RBKP-STBLG says it is reversed.
    CLEAR lv_found.
    SELECT belnr gjahr awtyp awkey FROM bkpf INTO (lv_belnr, lv_gjahr, lv_awtyp, lv_awkey)
      WHERE bukrs = headerdata-comp_code
        AND xblnr = headerdata-ref_doc_no
        AND stblg = space.
      IF lv_awtyp = 'RMRP'.
        CLEAR lv_stblg.
        lv_rbelnr = lv_awkey(10).
        lv_rgjahr = lv_awkey+10(4).
        SELECT SINGLE stblg FROM rbkp INTO lv_stblg
          WHERE belnr = lv_rbelnr AND gjahr = lv_rgjahr.
        IF lv_stblg IS NOT INITIAL.
          CONTINUE.
        ENDIF.
      ENDIF.
      lv_found = abap_true.
      EXIT.
    ENDSELECT.
    IF lv_found = abap_true.
      ls_return-type       = 'E'.
      ls_return-id         = 'ZMLC'.
      ls_return-number     = '001'.
      ls_return-message_v1 = headerdata-ref_doc_no.
      ls_return-message_v2 = lv_belnr.
      ls_return-message_v3 = headerdata-comp_code.
      ls_return-message_v4 = lv_gjahr.
      ls_return-parameter  = 'HEADERDATA'.
      ls_return-row        = 1.
      ls_return-field      = 'REF_DOC_NO'.
      CONCATENATE 'Document with reference' headerdata-ref_doc_no 'already posted:'
                  lv_belnr headerdata-comp_code lv_gjahr
        INTO ls_return-message SEPARATED BY space.
      APPEND ls_return TO return.
      CALL FUNCTION 'DEQUEUE_E_TABLE'
        EXPORTING mode_rstable = 'E' tabname = 'BKPF' varkey = lv_varkey.
      RETURN.
    ENDIF.
  ENDIF.

* 3. Create the invoice (numbers assigned, update task registered).
  CALL FUNCTION 'BAPI_INCOMINGINVOICE_CREATE'
    EXPORTING
      headerdata       = headerdata
      addressdata      = addressdata
    IMPORTING
      invoicedocnumber = invoicedocnumber
      fiscalyear       = fiscalyear
    TABLES
      itemdata         = itemdata
      accountingdata   = accountingdata
      glaccountdata    = glaccountdata
      taxdata          = taxdata
      return           = return.

* 4. Commit synchronously in the same session, or roll back.
  LOOP AT return TRANSPORTING NO FIELDS WHERE type CA 'AEX'.
    EXIT.
  ENDLOOP.
  IF sy-subrc = 0 OR invoicedocnumber IS INITIAL.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
    CLEAR invoicedocnumber.
  ELSE.
    CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
      EXPORTING
        wait   = 'X'
      IMPORTING
        return = ls_commit.
    IF ls_commit-type CA 'AEX'.
      APPEND ls_commit TO return.
    ELSE.
*     The FI follow-on document: AWTYP RMRP, AWKEY = invoice number + year.
      CONCATENATE invoicedocnumber fiscalyear INTO lv_awkey.
      SELECT SINGLE belnr FROM bkpf INTO accounting_doc
        WHERE awtyp = 'RMRP'
          AND awkey = lv_awkey
          AND bukrs = headerdata-comp_code.
    ENDIF.
  ENDIF.

* 5. Release the lock after the commit (COMMIT WORK AND WAIT has written BKPF).
  IF lv_varkey IS NOT INITIAL.
    CALL FUNCTION 'DEQUEUE_E_TABLE'
      EXPORTING mode_rstable = 'E' tabname = 'BKPF' varkey = lv_varkey.
  ENDIF.
ENDFUNCTION.
