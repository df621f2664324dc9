--
-- Rotation by size: after rotation_interval a segment is switched away from
-- only when it holds rotation_min_size (its rows, inline and TOASTed), or
-- once it is older than rotation_max_interval.  (The other tests run with
-- rotation_min_size 0: by time alone.)
--
SHOW deliver.rotation_min_size;
SET deliver.rotation_min_size = '64kB';
SET deliver.rotation_max_interval = '1h';
SET deliver.rotation_interval = '1ms';
SELECT deliver.create_queue('rot_small');
SELECT deliver.send('rot_small', '{"n": 1}') > 0 AS sent;
SELECT pg_sleep(0.01);
-- one small message: not rotated before an hour
SELECT queue, rotated FROM deliver.maintain('rot_small');
SELECT seg, state FROM deliver.segment s JOIN deliver.queue q USING (queue_id)
 WHERE q.queue_name = 'rot_small' ORDER BY seg;
-- older than rotation_max_interval: rotated whatever it holds
SET deliver.rotation_max_interval = '1ms';
SELECT pg_sleep(0.01);
SELECT queue, rotated FROM deliver.maintain('rot_small');
SET deliver.rotation_max_interval = '1h';
-- 100 messages of 1 kB: more than 64 kB, rotated after rotation_interval
SELECT count(*) AS sent FROM unnest(deliver.send_batch('rot_small',
    (SELECT array_agg(jsonb_build_object('n', i, 'pad', repeat('x', 1000))) FROM generate_series(1, 100) i)));
SELECT pg_sleep(0.01);
SELECT queue, rotated FROM deliver.maintain('rot_small');
-- a TOASTed payload counts too: one message of 200 kB (incompressible)
SELECT deliver.create_queue('rot_toast');
SELECT deliver.send('rot_toast', jsonb_build_object('pad',
    (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 6400) i))) > 0 AS sent;
SELECT pg_sleep(0.01);
SELECT queue, rotated FROM deliver.maintain('rot_toast');
-- bad values
SET deliver.rotation_min_size = -1;
SET deliver.rotation_max_interval = 0;
RESET deliver.rotation_min_size;
RESET deliver.rotation_max_interval;
RESET deliver.rotation_interval;
SELECT deliver.drop_queue('rot_small');
SELECT deliver.drop_queue('rot_toast');
