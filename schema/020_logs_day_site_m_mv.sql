-- Feeds logs_day_site_m (019) from every insert into logs (see 003 on retries).
CREATE MATERIALIZED VIEW IF NOT EXISTS logs_day_site_m_mv TO logs_day_site_m AS
SELECT
    toStartOfDay(created_at)          AS day,
    type,
    model_name,
    channel_id,
    `group`,
    toInt64(count())                  AS requests,
    sum(quota)                        AS quota,
    sum(prompt_tokens)                AS prompt_tokens,
    sum(completion_tokens)            AS completion_tokens
FROM logs
GROUP BY day, type, model_name, channel_id, `group`
