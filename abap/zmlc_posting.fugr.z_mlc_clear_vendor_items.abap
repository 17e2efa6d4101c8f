FUNCTION z_mlc_clear_vendor_items.
*"----------------------------------------------------------------------
*" ml-connector: a payment made outside SAP (e.g. by Ramp) clears the
*" open vendor items of an invoice (as F-53, through
*" POSTING_INTERFACE_CLEARING), and commits in ONE LUW. Remote-enabled.
*" Idempotent by the invoice's own state: items already cleared answer
*" E ZMLC 004 with the clearing document in V4.
*"
*"  IMPORTING
*"     VALUE(I_BUKRS) TYPE  BKPF-BUKRS
*"     VALUE(I_BELNR) TYPE  BKPF-BELNR
*"     VALUE(I_GJAHR) TYPE  BKPF-GJAHR
*"     VALUE(I_AUGDT) TYPE  BSAK-AUGDT OPTIONAL   " payment date (default today)
*"     VALUE(I_XBLNR) TYPE  BKPF-XBLNR OPTIONAL   " the payment's reference
*"     VALUE(I_SGTXT) TYPE  BSEG-SGTXT OPTIONAL
*"     VALUE(I_HKONT) TYPE  BSEG-HKONT OPTIONAL   " bank clearing account
*"  EXPORTING
*"     VALUE(E_AUGBL) TYPE  BSAK-AUGBL
*"     VALUE(E_AUGDT) TYPE  BSAK-AUGDT
*"  TABLES
*"      RETURN STRUCTURE  BAPIRET2
*"----------------------------------------------------------------------
  DATA: lt_bsik   TYPE STANDARD TABLE OF bsik,
        ls_bsik   TYPE bsik,
        ls_bsak   TYPE bsak,
        lt_ftpost TYPE STANDARD TABLE OF ftpost,
        ls_ftpost TYPE ftpost,
        lt_ftclear TYPE STANDARD TABLE OF ftclear,
        ls_ftclear TYPE ftclear,
        lt_blntab TYPE STANDARD TABLE OF blntab,
        ls_blntab TYPE blntab,
        lt_fttax  TYPE STANDARD TABLE OF fttax,
        lv_augdt  TYPE bsak-augdt,
        lv_datum  TYPE char10,
        lv_amount TYPE char16,
        lv_total  TYPE bsik-wrbtr,
        ls_return TYPE bapiret2.

  REFRESH return.
  CLEAR: e_augbl, e_augdt.
  lv_augdt = i_augdt.
  IF lv_augdt IS INITIAL.
    lv_augdt = sy-datum.
  ENDIF.

  SELECT * FROM bsik INTO TABLE lt_bsik
    WHERE bukrs = i_bukrs AND belnr = i_belnr AND gjahr = i_gjahr.
  IF lt_bsik IS INITIAL.
    SELECT SINGLE * FROM bsak INTO ls_bsak
      WHERE bukrs = i_bukrs AND belnr = i_belnr AND gjahr = i_gjahr.
    ls_return-type = 'E'. ls_return-id = 'ZMLC'. ls_return-parameter = 'I_BELNR'.
    ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
    IF sy-subrc = 0.
      ls_return-number = '004'. ls_return-message_v4 = ls_bsak-augbl.
    ELSE.
      ls_return-number = '002'.
    ENDIF.
    APPEND ls_return TO return.
    RETURN.
  ENDIF.

  READ TABLE lt_bsik INTO ls_bsik INDEX 1.
  LOOP AT lt_bsik INTO ls_bsik.
    IF ls_bsik-shkzg = 'H'.
      lv_total = lv_total + ls_bsik-wrbtr.
    ELSE.
      lv_total = lv_total - ls_bsik-wrbtr.
    ENDIF.
  ENDLOOP.
  WRITE lv_augdt TO lv_datum DD/MM/YYYY.
  WRITE lv_total TO lv_amount CURRENCY ls_bsik-waers NO-GROUPING.

  CALL FUNCTION 'POSTING_INTERFACE_START'
    EXPORTING
      i_function = 'C'          " call transaction
      i_mode     = 'N'
      i_update   = 'S'.

  DEFINE add_post.
    ls_ftpost-stype = &1. ls_ftpost-count = &2. ls_ftpost-fnam = &3. ls_ftpost-fval = &4.
    APPEND ls_ftpost TO lt_ftpost.
  END-OF-DEFINITION.
  add_post 'K' 1 'BKPF-BLDAT' lv_datum.
  add_post 'K' 1 'BKPF-BUDAT' lv_datum.
  add_post 'K' 1 'BKPF-BLART' 'KZ'.
  add_post 'K' 1 'BKPF-BUKRS' i_bukrs.
  add_post 'K' 1 'BKPF-WAERS' ls_bsik-waers.
  add_post 'K' 1 'BKPF-XBLNR' i_xblnr.
  add_post 'K' 1 'BKPF-BKTXT' i_sgtxt.
  add_post 'P' 1 'RF05A-NEWBS' '50'.
  add_post 'P' 1 'RF05A-NEWKO' i_hkont.
  add_post 'P' 1 'BSEG-WRBTR' lv_amount.
  add_post 'P' 1 'BSEG-SGTXT' i_sgtxt.

  ls_ftclear-agkoa = 'K'.
  ls_ftclear-agkon = ls_bsik-lifnr.
  ls_ftclear-agbuk = i_bukrs.
  ls_ftclear-xnops = 'X'.
  ls_ftclear-selfd = 'BELNR'.
  CONCATENATE i_belnr i_gjahr INTO ls_ftclear-selvon.
  APPEND ls_ftclear TO lt_ftclear.

  CALL FUNCTION 'POSTING_INTERFACE_CLEARING'
    EXPORTING
      i_auglv   = 'AUSGZAHL'    " outgoing payment
      i_tcode   = 'FB05'
      i_sgfunct = 'C'
    IMPORTING
      e_msgid   = ls_return-id
      e_msgno   = ls_return-number
      e_msgty   = ls_return-type
      e_msgv1   = ls_return-message_v1
      e_msgv2   = ls_return-message_v2
      e_msgv3   = ls_return-message_v3
      e_msgv4   = ls_return-message_v4
    TABLES
      t_blntab  = lt_blntab
      t_ftclear = lt_ftclear
      t_ftpost  = lt_ftpost
      t_fttax   = lt_fttax
    EXCEPTIONS
      OTHERS    = 1.
  CALL FUNCTION 'POSTING_INTERFACE_END'.

  READ TABLE lt_blntab INTO ls_blntab INDEX 1.
  IF sy-subrc <> 0 OR ls_blntab-belnr IS INITIAL.
    CALL FUNCTION 'BAPI_TRANSACTION_ROLLBACK'.
    IF ls_return-type IS INITIAL OR ls_return-type = 'S'.
      ls_return-type = 'E'.
    ENDIF.
    ls_return-parameter = 'I_BELNR'.
    APPEND ls_return TO return.
    RETURN.
  ENDIF.
  CALL FUNCTION 'BAPI_TRANSACTION_COMMIT'
    EXPORTING
      wait = 'X'.
  e_augbl = ls_blntab-belnr.
  e_augdt = lv_augdt.
  CLEAR ls_return.
  ls_return-type = 'S'. ls_return-id = 'ZMLC'. ls_return-number = '007'.
  ls_return-message_v1 = i_belnr. ls_return-message_v2 = i_bukrs. ls_return-message_v3 = i_gjahr.
  ls_return-message_v4 = e_augbl.
  APPEND ls_return TO return.
ENDFUNCTION.
