-- The INSERT esbd makes for an accepted async invocation (PostgresAsyncRecords.insert), as pgbench runs it.
INSERT INTO async_invocation(cid, kind, source, orig_cid, target, payload, callback, callback_id, context, repeats,
  interval_ms, backoff, max_interval_ms, attempts, status, errors, response, next_run_at, callback_status,
  callback_deliveries, callback_deferrals, callback_error, interruptions, created_at, updated_at, finished_at)
VALUES (md5(random()::text), 'invoke_async', 'bench.async.accept', md5(random()::text), 'bench.async.noop', '\x78'::bytea,
  NULL, md5(random()::text), NULL, 0, 0, 1, NULL, 0, 'pending', '[]', NULL,
  (extract(epoch from now()) * 1000)::bigint, 'none', 0, 0, NULL, 0, 0, 0, NULL);
