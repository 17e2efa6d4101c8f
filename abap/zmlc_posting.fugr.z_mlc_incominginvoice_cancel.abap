FUNCTION z_mlc_incominginvoice_cancel.
*"----------------------------------------------------------------------
*" ml-connector: reverse one MM (logistics) invoice as MR8M does and commit
*" in ONE LUW. Remote-enabled (RFC). Idempotent by the invoice's own state:
*" an invoice already reversed answers E ZMLC 010 with the reversal in V3/V4.
*"
*" BAPI_INCOMINGINVOICE_CANCEL (function group MRM_BAPI) has no transaction
*" control: the caller must COMMIT WORK in the same session (SAP's FM
*" documentation), which a stateless SOAP-RFC request cannot do by itself.
*"
*"  IMPORTING
*"     VALUE(I_BELNR) TYPE  RBKP-BELNR
*"     VALUE(I_GJAHR) TYPE  RBKP-GJAHR
*"     VALUE(I_STGRD) TYPE  BAPI_INCINV_FLD-REASON_REV DEFAULT '01'
*"     VALUE(I_BUDAT) TYPE  BAPI_INCINV_FLD-PSTNG_DATE OPTIONAL
*"  EXPORTING
*"     VALUE(E_STBLG) TYPE  RBKP-STBLG
*"     VALUE(E_STJAH) TYPE  RBKP-STJAH
*"  TABLES
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: ls_rbkp   TYPE rbkp,
        lv_varkey TYPE rstable-varkey,
        lv_rev    TYPE bapi_incinv_fld-inv_doc_no,
        lv_revyr  TYPE bapi_incinv_fld-fisc_year,
        ls_return TYPE bapiret2,
        ls_commit TYPE bapiret2.

  REFRESH return.
  CLEAR: e_stblg, e_stjah.

* 1. Serialize reversals of this invoice (generic table lock on RBKP, client + BELNR + GJAHR),
*    held until after the commit: two concurrent calls cannot both pass the state check.
  CONCATENATE sy-mandt i_belnr i_gjahr INTO lv_varkey RESPECTING BLANKS.
  CALL FUNCTION 'ENQUEUE_E_TABLE'
    EXPORTING
      mode_rstable   = 'E'
      tabname        = 'RBKP'
      varkey         = lv_varkey
      _wait          = 'X'
    EXCEPTIONS
      foreign_lock   = 1
      system_failure = 2
      OTHERS         = 3.
  IF sy-subrc <> 0.
    ls_return-type = 'E'. ls_return-id = sy-msgid. ls_return-number = sy-msgno.
    ls_return-message_v1 = sy-msgv1. ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
    RETURN.
  ENDIF.

* 2. The invoice's own state: missing (ZMLC 009) or already reversed (ZMLC 010, V3/V4 = reversal).
  SELECT SINGLE * FROM rbkp INTO ls_rbkp WHERE belnr = i_belnr AND gjahr = i_gjahr.
  IF sy-subrc <> 0.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '009'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_gjahr. ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ELSEIF ls_rbkp-stblg IS NOT INITIAL.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-number = '010'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_gjahr.
    ls_return-message_v3 = ls_rbkp-stblg. ls_return-message_v4 = ls_rbkp-stjah.
    ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
  ENDIF.
  IF return[] IS NOT INITIAL.
    CALL FUNCTION 'DEQUEUE_E_TABLE'
      EXPORTING mode_rstable = 'E' tabname = 'RBKP' varkey = lv_varkey.
    RETURN.
  ENDIF.

* 3. MR8M (reversal document, RBKP-STBLG/STJAH of the original, the FI document reversed).
  CALL FUNCTION 'BAPI_INCOMINGINVOICE_CANCEL'
    EXPORTING
      invoicedocnumber          = i_belnr
      fiscalyear                = i_gjahr
      reasonreversal            = i_stgrd
      postingdate               = i_budat
    IMPORTING
      invoicedocnumber_reversal = lv_rev
      fiscalyear_reversal       = lv_revyr
    TABLES
      return                    = return.

* 4. Commit synchronously in the same session, or roll back.
  LOOP AT return TRANSPORTING NO FIELDS WHERE type CA 'AEX'.
    EXIT.
  ENDLOOP.
  IF sy-subrc = 0 OR lv_rev IS INITIAL.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
  ELSE.
    CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
      EXPORTING
        wait   = 'X'
      IMPORTING
        return = ls_commit.
    IF ls_commit-type CA 'AEX'.
      APPEND ls_commit TO return.
    ELSE.
      e_stblg = lv_rev.
      e_stjah = lv_revyr.
      CLEAR ls_return.
      ls_return-type = 'S'. ls_return-id = 'ZMLC'. ls_return-number = '011'.
      ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_gjahr.
      ls_return-message_v3 = lv_rev. ls_return-message_v4 = lv_revyr.
      APPEND ls_return TO return.
    ENDIF.
  ENDIF.

* 5. Release the lock after the commit.
  CALL FUNCTION 'DEQUEUE_E_TABLE'
    EXPORTING mode_rstable = 'E' tabname = 'RBKP' varkey = lv_varkey.
ENDFUNCTION.
