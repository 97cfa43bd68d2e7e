// Which built-in functions a read replica may run: the safe list, and why the known unsafe ones need the primary.

/*
 * A function call is safe on a hot standby when it writes nothing, assigns no transaction id, takes no
 * lock another server must see and leaves no effect that has to happen on the primary. Anything not on
 * this list routes to the primary: the list errs towards the primary, never towards a replica. Names are
 * pg_catalog's; a call qualified with pg_catalog counts as the bare name.
 *
 * Several SQL spellings reach the parser as calls of pg_catalog functions: EXTRACT → extract, TRIM →
 * btrim/ltrim/rtrim, POSITION → position, SUBSTRING → substring, OVERLAY → overlay, AT TIME ZONE →
 * timezone, COLLATION FOR → pg_collation_for, IS NORMALIZED → is_normalized, OVERLAPS → overlaps,
 * SIMILAR TO → similar_to_escape. Others (COALESCE, GREATEST, CURRENT_DATE, CURRENT_USER, JSON_OBJECT,
 * XMLELEMENT ...) are not function calls in the tree at all.
 */
const SAFE_LIST = `
  count sum avg min max array_agg string_agg json_agg jsonb_agg json_agg_strict jsonb_agg_strict
  json_object_agg jsonb_object_agg json_object_agg_strict jsonb_object_agg_strict json_object_agg_unique
  jsonb_object_agg_unique json_object_agg_unique_strict jsonb_object_agg_unique_strict bool_and bool_or
  every bit_and bit_or bit_xor xmlagg any_value stddev stddev_pop stddev_samp variance var_pop var_samp
  corr covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope regr_sxx
  regr_sxy regr_syy mode percentile_cont percentile_disc range_agg range_intersect_agg grouping

  row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value

  ascii bit_length btrim char_length character_length chr concat concat_ws convert convert_from convert_to
  decode encode format initcap left length lower lpad ltrim md5 octet_length overlay parse_ident position
  quote_ident quote_literal quote_nullable regexp_count regexp_instr regexp_like regexp_match
  regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_substr repeat replace
  reverse right rpad rtrim split_part starts_with string_to_array string_to_table strpos substr substring
  to_ascii to_hex to_bin to_oct translate trim unistr upper casefold normalize is_normalized
  unicode_assigned unicode_version sha224 sha256 sha384 sha512 crc32 crc32c get_bit get_byte set_bit
  set_byte bit_count similar_to_escape similar_escape like_escape textcat

  abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 min_scale mod pi power pow
  radians round scale sign sqrt trim_scale trunc width_bucket random random_normal acos acosd asin asind
  atan atand atan2 atan2d cos cosd cot cotd sin sind tan tand sinh cosh tanh asinh acosh atanh erf erfc
  gamma lgamma to_char to_date to_number to_timestamp

  age clock_timestamp date_add date_bin date_part date_subtract date_trunc extract isfinite justify_days
  justify_hours justify_interval make_date make_interval make_time make_timestamp make_timestamptz now
  statement_timestamp timeofday transaction_timestamp timezone overlaps

  to_json to_jsonb array_to_json row_to_json json_build_array jsonb_build_array json_build_object
  jsonb_build_object json_object jsonb_object json_array_elements jsonb_array_elements
  json_array_elements_text jsonb_array_elements_text json_array_length jsonb_array_length json_each
  jsonb_each json_each_text jsonb_each_text json_extract_path jsonb_extract_path json_extract_path_text
  jsonb_extract_path_text json_object_keys jsonb_object_keys json_populate_record jsonb_populate_record
  jsonb_populate_record_valid json_populate_recordset jsonb_populate_recordset json_to_record
  jsonb_to_record json_to_recordset jsonb_to_recordset json_strip_nulls jsonb_strip_nulls jsonb_set
  jsonb_set_lax jsonb_insert jsonb_concat jsonb_contains jsonb_exists jsonb_path_exists jsonb_path_match
  jsonb_path_query jsonb_path_query_array jsonb_path_query_first jsonb_path_exists_tz jsonb_path_match_tz
  jsonb_path_query_tz jsonb_path_query_array_tz jsonb_path_query_first_tz jsonb_pretty json_typeof
  jsonb_typeof

  to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_rank_cd
  ts_headline setweight strip tsvector_to_array array_to_tsvector numnode querytree ts_debug ts_lexize
  ts_parse ts_token_type ts_delete ts_filter get_current_ts_config tsquery_phrase

  array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position
  array_positions array_prepend array_remove array_replace array_reverse array_sample array_shuffle
  array_sort array_to_string array_upper cardinality trim_array unnest generate_subscripts generate_series

  isempty lower_inc upper_inc lower_inf upper_inf range_merge multirange int4range int8range numrange
  tsrange tstzrange daterange int4multirange int8multirange nummultirange tsmultirange tstzmultirange
  datemultirange

  abbrev broadcast family host hostmask inet_merge inet_same_family masklen netmask network set_masklen
  macaddr8_set7bit inet_client_addr inet_client_port inet_server_addr inet_server_port

  area center diameter height isclosed isopen npoints pclose popen radius slope width box circle line lseg
  path point polygon bound_box

  gen_random_uuid uuidv4 uuidv7 uuid_extract_timestamp uuid_extract_version

  xmlcomment xmltext xpath xpath_exists xml_is_well_formed xml_is_well_formed_document
  xml_is_well_formed_content

  bool int2 int4 int8 float4 float8 numeric text varchar bpchar char name oid date time timetz timestamp
  timestamptz interval json jsonb uuid bytea inet cidr macaddr macaddr8 money regclass regtype regproc
  regprocedure regoper regoperator regnamespace regrole regconfig regdictionary regcollation

  num_nulls num_nonnulls pg_typeof pg_column_size pg_column_compression pg_column_toast_chunk_id
  format_type current_setting current_database current_schema current_schemas current_query version
  system_user current_user session_user current_role current_catalog user xmlexists pg_client_encoding
  pg_backend_pid pg_last_wal_replay_lsn pg_last_wal_receive_lsn
  pg_last_xact_replay_timestamp pg_postmaster_start_time pg_conf_load_time pg_jit_available
  pg_listening_channels pg_notification_queue_usage pg_trigger_depth pg_my_temp_schema
  pg_is_other_temp_schema pg_get_wal_replay_pause_state pg_is_wal_replay_paused
  pg_safe_snapshot_blocking_pids pg_blocking_pids pg_sleep pg_sleep_for pg_sleep_until pg_has_role
  row_security_active acldefault aclexplode makeaclitem to_regclass to_regcollation to_regnamespace
  to_regoper to_regoperator to_regproc to_regprocedure to_regrole to_regtype to_regtypemod
  obj_description col_description shobj_description pg_size_pretty pg_size_bytes pg_database_size
  pg_indexes_size pg_relation_size pg_table_size pg_total_relation_size pg_tablespace_size
  pg_relation_filenode pg_relation_filepath pg_filenode_relation pg_tablespace_location
  pg_tablespace_databases pg_char_to_encoding pg_encoding_to_char pg_client_encoding
  pg_encoding_max_length pg_xact_commit_timestamp pg_xact_commit_timestamp_origin pg_last_committed_xact
  pg_current_snapshot pg_snapshot_xip pg_snapshot_xmax pg_snapshot_xmin pg_visible_in_snapshot
  pg_xact_status txid_current_snapshot txid_snapshot_xip txid_snapshot_xmax txid_snapshot_xmin
  txid_visible_in_snapshot txid_status pg_wal_lsn_diff pg_input_is_valid pg_input_error_info
  pg_collation_for pg_partition_tree pg_partition_root pg_partition_ancestors pg_options_to_table
  pg_identify_object pg_identify_object_as_address pg_describe_object pg_index_column_has_property
  pg_indexam_has_property pg_index_has_property pg_settings_get_flags pg_control_checkpoint
  pg_control_system pg_control_init pg_control_recovery pg_available_extensions
  pg_available_extension_versions pg_show_all_settings pg_timezone_names pg_timezone_abbrevs
  pg_cursor pg_prepared_statement pg_lock_status pg_get_keywords pg_get_catalog_foreign_keys
`;

const SAFE: ReadonlySet<string> = new Set(SAFE_LIST.split(/\s+/).filter((s) => s !== ''));

/** Families of built-ins that only read: pg_get_*def and friends, statistics readers, privilege checks, visibility checks. */
function safeFamily(name: string): boolean {
  return (
    name.startsWith('pg_get_') ||
    name.startsWith('pg_stat_get_') ||
    (name.startsWith('has_') && name.endsWith('_privilege')) ||
    (name.startsWith('pg_') && name.endsWith('_is_visible'))
  );
}

/** Built-ins that must run on the primary, by what they do; the reason shown for them. */
const UNSAFE = new Map<string, string>();
for (const [why, names] of [
  ['sequence', 'nextval setval currval lastval'],
  ['notify', 'pg_notify'],
  // Whether the server is writable: the gateway stands for the primary (drivers and tools check this).
  ['server role', 'pg_is_in_recovery'],
  ['assigns a transaction id', 'txid_current txid_current_if_assigned pg_current_xact_id pg_current_xact_id_if_assigned'],
  [
    'writes WAL',
    'pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn pg_switch_wal pg_create_restore_point ' +
      'pg_backup_start pg_backup_stop pg_logical_emit_message pg_log_standby_snapshot pg_walfile_name pg_walfile_name_offset',
  ],
  [
    'server administration',
    'pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_promote pg_wal_replay_pause ' +
      'pg_wal_replay_resume pg_log_backend_memory_contexts pg_import_system_collations',
  ],
] as const) {
  for (const n of names.split(' ')) UNSAFE.set(n, why);
}

/** Why a built-in called by this bare name needs the primary; undefined when nothing specific is known. */
export function unsafeReason(name: string): string | undefined {
  const known = UNSAFE.get(name);
  if (known !== undefined) return known;
  if (name.startsWith('pg_advisory_') || name.startsWith('pg_try_advisory_')) return 'advisory lock';
  if (name.startsWith('lo_') || name === 'loread' || name === 'lowrite') return 'large object';
  if (
    name.startsWith('pg_replication_') ||
    name.startsWith('pg_logical_slot_') ||
    (/^pg_(?:create|drop|copy)_/.test(name) && name.endsWith('replication_slot'))
  ) {
    return 'replication';
  }
  if (name.startsWith('pg_stat_reset')) return 'server administration';
  return undefined;
}

/** Whether a built-in called by this bare name is known to be safe on a replica. */
export function builtinSafe(name: string): boolean {
  return SAFE.has(name) || safeFamily(name);
}
