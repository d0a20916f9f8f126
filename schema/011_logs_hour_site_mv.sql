-- Feeds logs_hour_site (010) from every insert into logs (one block per insert block;
-- a retried batch is deduplicated in both, see 003).
CREATE MATERIALIZED VIEW IF NOT EXISTS logs_hour_site_mv TO logs_hour_site AS
SELECT
    toStartOfHour(created_at)         AS hour,
    type,
    model_name,
    channel_id,
    `group`,
    toInt64(count())                  AS requests,
    sum(quota)                        AS quota,
    sum(prompt_tokens)                AS prompt_tokens,
    sum(completion_tokens)            AS completion_tokens
FROM logs
GROUP BY hour, type, model_name, channel_id, `group`
