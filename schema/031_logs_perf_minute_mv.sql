-- Feeds logs_perf_minute (030) from every insert into logs (ingest and import alike:
-- frt is read from `other` here). The bucket expression must stay the one in
-- service/performance.py (FRT_BUCKET), which reads the raw edge seconds the same way.
CREATE MATERIALIZED VIEW IF NOT EXISTS logs_perf_minute_mv TO logs_perf_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    user_id,
    type,
    username,
    token_name,
    model_name,
    channel_id,
    `group`,
    if(type = 2, use_time, 0) AS use_time,
    if(type = 2 AND JSONExtractFloat(other, 'frt') > 0,
       toInt16(floor(log(JSONExtractFloat(other, 'frt')) / log(1.03))),
       toInt16(-32768)) AS frt_bucket,
    toInt64(count()) AS n
FROM logs
WHERE type IN (2, 5)
GROUP BY minute, user_id, type, username, token_name, model_name, channel_id, `group`, use_time, frt_bucket
