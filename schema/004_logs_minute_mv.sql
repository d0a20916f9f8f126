-- Feeds logs_minute (003) from every insert into logs. One block of the view per insert
-- block of logs; a retried batch is deduplicated in both (see 003).
CREATE MATERIALIZED VIEW IF NOT EXISTS logs_minute_mv TO logs_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    user_id,
    type,
    username,
    token_name,
    model_name,
    channel_id,
    `group`,
    toInt64(count())                  AS requests,
    sum(quota)                        AS quota,
    sum(prompt_tokens)                AS prompt_tokens,
    sum(completion_tokens)            AS completion_tokens
FROM logs
GROUP BY minute, user_id, type, username, token_name, model_name, channel_id, `group`
