FUNCTION z_mlc_set_payment_block.
*"----------------------------------------------------------------------
*" ml-connector: set or remove the payment block (ZLSPR) on the open
*" vendor items of an accounting document, and commit in ONE LUW.
*" Remote-enabled (RFC).
*"
*"  IMPORTING
*"     VALUE(I_BUKRS) TYPE  BKPF-BUKRS
*"     VALUE(I_BELNR) TYPE  BKPF-BELNR
*"     VALUE(I_GJAHR) TYPE  BKPF-GJAHR
*"     VALUE(I_BUZEI) TYPE  BSEG-BUZEI OPTIONAL
*"     VALUE(I_ZLSPR) TYPE  BSEG-ZLSPR OPTIONAL
*"  EXPORTING
*"     VALUE(E_CHANGED) TYPE  I
*"  TABLES
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: lt_bsik   TYPE STANDARD TABLE OF bsik,
        ls_bsik   TYPE bsik,
        lt_buztab TYPE tpit_t_buztab,
        ls_buztab TYPE tpit_buztab,
        lt_fldtab TYPE tpit_t_fname,
        ls_fldtab TYPE tpit_fname,
        lt_errtab TYPE tpit_t_errdoc,
        ls_errtab TYPE tpit_errdoc,
        ls_bseg   TYPE bseg,
        ls_return TYPE bapiret2.

  CLEAR e_changed.
  REFRESH return.

  SELECT * FROM bsik INTO TABLE lt_bsik
    WHERE bukrs = i_bukrs
      AND belnr = i_belnr
      AND gjahr = i_gjahr.
  IF i_buzei IS NOT INITIAL.
    DELETE lt_bsik WHERE buzei <> i_buzei.
  ENDIF.
  IF lt_bsik IS INITIAL.
    ls_return-type       = 'E'.
    ls_return-id         = 'ZMLC'.
    ls_return-number     = '002'.
    ls_return-message_v1 = i_belnr.
    ls_return-message_v2 = i_bukrs.
    ls_return-message_v3 = i_gjahr.
    ls_return-parameter  = 'I_BELNR'.
    CONCATENATE 'Document' i_belnr i_bukrs i_gjahr 'has no open vendor item'
      INTO ls_return-message SEPARATED BY space.
    APPEND ls_return TO return.
    RETURN.
  ENDIF.

  LOOP AT lt_bsik INTO ls_bsik.
    ls_buztab-bukrs = ls_bsik-bukrs.
    ls_buztab-belnr = ls_bsik-belnr.
    ls_buztab-gjahr = ls_bsik-gjahr.
    ls_buztab-buzei = ls_bsik-buzei.
    ls_buztab-koart = 'K'.
    ls_buztab-bschl = ls_bsik-bschl.
    APPEND ls_buztab TO lt_buztab.
  ENDLOOP.
  ls_fldtab-fname = 'ZLSPR'.
  APPEND ls_fldtab TO lt_fldtab.
  ls_bseg-zlspr = i_zlspr.

* FI_ITEMS_MASS_CHANGE changes the items (and BSIK) and writes change
* documents; it calls the update task, so commit below.
  CALL FUNCTION 'FI_ITEMS_MASS_CHANGE'
    EXPORTING
      s_bseg     = ls_bseg
    IMPORTING
      errtab     = lt_errtab
    TABLES
      it_buztab  = lt_buztab
      it_fldtab  = lt_fldtab
    EXCEPTIONS
      bdc_errors = 1
      OTHERS     = 2.
  IF sy-subrc <> 0 OR lt_errtab IS NOT INITIAL.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
    LOOP AT lt_errtab INTO ls_errtab.
      ls_return-type       = 'E'.
      ls_return-id         = ls_errtab-err-msgid.
      ls_return-number     = ls_errtab-err-msgno.
      ls_return-message_v1 = ls_errtab-err-msgv1.
      ls_return-message_v2 = ls_errtab-err-msgv2.
      ls_return-message_v3 = ls_errtab-err-msgv3.
      ls_return-message_v4 = ls_errtab-err-msgv4.
      APPEND ls_return TO return.
    ENDLOOP.
    IF return[] IS INITIAL.
      ls_return-type = 'E'.
      ls_return-id = sy-msgid.
      ls_return-number = sy-msgno.
      APPEND ls_return TO return.
    ENDIF.
    RETURN.
  ENDIF.

  CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
    EXPORTING
      wait = 'X'.
  e_changed = lines( lt_buztab ).
  ls_return-type       = 'S'.
  ls_return-id         = 'ZMLC'.
  ls_return-number     = '003'.
  ls_return-message_v1 = i_belnr.
  ls_return-message_v2 = i_bukrs.
  ls_return-message_v3 = i_gjahr.
  CONCATENATE 'Payment block changed for document' i_belnr i_bukrs i_gjahr
    INTO ls_return-message SEPARATED BY space.
  APPEND ls_return TO return.
ENDFUNCTION.
