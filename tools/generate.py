"""``python -m service generate``: realistic synthetic gateway logs, straight into the engine.

The data imitates what a busy new-api gateway writes: many users whose activity is
heavily skewed (a few users send most requests), a few tokens per user, tens of models
served by tens of channels, a few groups with their price ratios; mostly consume logs,
some errors, top-ups, system, management, refund and login logs; traffic that follows a
daily wave (Beijing office hours and evenings), quieter weekends, and bursts of batch
jobs; token counts with long tails; ``other`` JSON in the gateway's own shape (price
ratios, ``frt``, ``admin_info``, ``request_path``); Chinese and English content.

Everything is vectorised (numpy for numbers, pyarrow compute for strings) and built in
chunks of :data:`CHUNK_ROWS` rows covering consecutive minutes, so ids grow with time.
The output is a pure function of ``(rows, days, seed, end, first_id)``: each chunk has
its own random generator seeded with ``(seed, chunk number)``, and each chunk's insert
carries a deduplication token, so running the same command twice stores it once.

Token keys are derivable from the seed (:func:`token_key`), so benchmarks and tests can
call the public token lookup with real keys; only their hashes are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from service.bulk import arrow_table
from service.columns import LOGS, TOKENS
from service.commands import Command, with_store
from service.settings import Settings

CHUNK_ROWS = 1 << 18
BEIJING_OFFSET_HOURS = 8
QUOTA_PER_UNIT = 500_000  # the gateway's quota units per US dollar

# name, model ratio, completion ratio, kind, popularity, cache ratio (0: no caching)
MODELS: tuple[tuple[str, float, float, str, float, float], ...] = (
    ("gpt-4o-mini", 0.075, 4.0, "chat", 30, 0.5),
    ("gpt-4o", 1.25, 4.0, "chat", 22, 0.5),
    ("deepseek-chat", 0.135, 4.0, "chat", 20, 0.1),
    ("claude-sonnet-4-20250514", 1.5, 5.0, "claude", 18, 0.1),
    ("gpt-4.1", 1.0, 4.0, "chat", 12, 0.25),
    ("gemini-2.5-flash", 0.15, 8.33, "chat", 12, 0.25),
    ("deepseek-reasoner", 0.275, 4.0, "chat", 10, 0.1),
    ("qwen-plus", 0.4, 2.5, "chat", 9, 0.0),
    ("gpt-4.1-mini", 0.2, 4.0, "chat", 9, 0.25),
    ("claude-3-5-haiku-20241022", 0.4, 5.0, "claude", 8, 0.1),
    ("gemini-2.5-pro", 0.625, 8.0, "chat", 8, 0.25),
    ("o4-mini", 0.55, 4.0, "chat", 6, 0.25),
    ("claude-opus-4-20250514", 7.5, 5.0, "claude", 4, 0.1),
    ("o3", 1.0, 4.0, "chat", 4, 0.25),
    ("text-embedding-3-small", 0.01, 1.0, "embedding", 7, 0.0),
    ("glm-4.5", 0.5, 4.0, "chat", 5, 0.0),
    ("kimi-k2-0711-preview", 0.3, 4.0, "chat", 5, 0.0),
    ("qwen3-coder-plus", 0.5, 4.0, "chat", 4, 0.0),
    ("doubao-seed-1-6-250615", 0.4, 4.0, "chat", 4, 0.0),
    ("grok-3", 1.5, 5.0, "chat", 3, 0.0),
    ("gpt-3.5-turbo", 0.25, 3.0, "chat", 3, 0.0),
    ("text-embedding-3-large", 0.065, 1.0, "embedding", 2, 0.0),
    ("qwen-max", 1.2, 4.0, "chat", 2, 0.0),
    ("moonshot-v1-8k", 0.6, 1.0, "chat", 1.5, 0.0),
    ("gpt-image-1", 0.0, 1.0, "image", 1.5, 0.0),
    ("dall-e-3", 0.0, 1.0, "image", 1, 0.0),
    ("whisper-1", 15.0, 1.0, "audio", 1, 0.0),
    ("tts-1", 7.5, 1.0, "audio", 0.8, 0.0),
    ("mj_imagine", 0.0, 1.0, "image", 1, 0.0),
    ("claude-3-7-sonnet-20250219", 1.5, 5.0, "claude", 3, 0.1),
)
IMAGE_PRICES = {"gpt-image-1": 0.04, "dall-e-3": 0.04, "mj_imagine": 0.1}
REQUEST_PATHS = {
    "chat": "/v1/chat/completions",
    "claude": "/v1/messages",
    "embedding": "/v1/embeddings",
    "image": "/v1/images/generations",
    "audio": "/v1/audio/transcriptions",
}
CHANNEL_VENDORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("OpenAI 官方", ("gpt", "o3", "o4", "text-embedding", "dall-e", "whisper", "tts")),
    ("Azure East US", ("gpt", "text-embedding", "dall-e")),
    ("Azure Japan East", ("gpt", "o4", "o3")),
    ("Claude 官转", ("claude",)),
    ("AWS Bedrock", ("claude",)),
    ("Vertex AI", ("gemini", "claude")),
    ("Gemini 官方", ("gemini",)),
    ("DeepSeek 官方", ("deepseek",)),
    ("阿里云百炼", ("qwen",)),
    ("智谱 BigModel", ("glm",)),
    ("Moonshot", ("kimi", "moonshot")),
    ("火山方舟", ("doubao", "deepseek", "kimi")),
    ("xAI", ("grok",)),
    ("Midjourney Proxy", ("mj_",)),
    ("OpenRouter", ("gpt", "claude", "gemini", "deepseek", "qwen", "grok", "o3", "o4")),
    ("中转备用", ("gpt", "claude", "gemini")),
)
GROUPS: tuple[tuple[str, float, float], ...] = (  # name, ratio, share of users
    ("default", 1.0, 0.72),
    ("vip", 0.8, 0.18),
    ("svip", 0.6, 0.07),
    ("enterprise", 0.5, 0.03),
)
# Log types as the gateway numbers them, with their share of all rows.
TYPE_SHARES: tuple[tuple[int, float], ...] = (
    (2, 0.905),  # consume
    (5, 0.07),  # error
    (1, 0.006),  # top-up
    (4, 0.006),  # system
    (3, 0.003),  # manage
    (6, 0.003),  # refund
    (7, 0.007),  # login
)
ERRORS: tuple[tuple[int, str, str, str], ...] = (  # status, error type, code, message
    (429, "upstream_error", "rate_limit_exceeded",
     "status_code=429, Rate limit reached for requests, please try again later"),
    (429, "new_api_error", "channel_busy", "当前分组上游负载已饱和，请稍后再试"),
    (500, "upstream_error", "server_error",
     "status_code=500, The server had an error while processing your request"),
    (503, "upstream_error", "model_overloaded", "status_code=503, 模型负载过高，请稍后重试"),
    (400, "invalid_request_error", "context_length_exceeded",
     "This model's maximum context length is 128000 tokens. However, your messages "
     "resulted in 131072 tokens"),
    (401, "upstream_error", "invalid_api_key", "status_code=401, 上游渠道密钥无效"),
    (403, "new_api_error", "insufficient_user_quota", "用户额度不足，剩余额度: ＄0.012000"),
    (403, "new_api_error", "model_not_allowed", "该令牌无权使用模型：claude-opus-4-20250514"),
    (504, "new_api_error", "do_request_failed",
     "do request failed: Post \\\"https://api.example.com/v1/chat/completions\\\": "
     "context deadline exceeded"),
    (400, "upstream_error", "content_policy_violation",
     "Your request was rejected as a result of our safety system"),
    (502, "new_api_error", "bad_response_status_code", "bad response status code 502"),
    (500, "new_api_error", "get_channel_failed", "获取渠道失败：分组 default 下模型无可用渠道"),
)  # fmt: skip
TOKEN_NAMES = (
    "default", "cursor", "openwebui", "生产环境", "测试", "cherry-studio", "lobechat",
    "dify", "n8n", "chatbox", "claude-code", "翻译服务", "客服机器人", "backend", "dev",
)  # fmt: skip
USER_PREFIXES = ("user", "dev", "team", "ai", "studio", "lab", "app", "bot")
ALPHABET = np.frombuffer(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8
)


def token_key(seed: int, token_id: int) -> str:
    """The 48-character secret key of a generated token (without ``sk-``)."""
    digest = hashlib.blake2b(f"gatelog:{seed}:{token_id}".encode(), digest_size=48).digest()
    return bytes(ALPHABET[np.frombuffer(digest, dtype=np.uint8) % len(ALPHABET)]).decode()


@dataclass(frozen=True)
class Spec:
    rows: int
    days: int = 30
    seed: int = 1
    end: int = 0  # created_at < end; 0 means the current minute's end
    first_id: int = 1
    users: int = 0  # 0: scaled from rows

    def resolved(self) -> Spec:
        end = self.end or (int(time.time()) // 60 + 1) * 60
        users = self.users or int(min(max(self.rows // 250, 20), 200_000))
        return Spec(self.rows, self.days, self.seed, end, self.first_id, users)

    @property
    def start(self) -> int:
        return self.end - self.days * 86400


@dataclass
class World:
    """Everything that does not change from row to row: users, tokens, models, channels."""

    spec: Spec
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.spec = self.spec.resolved()
        self.rng = np.random.default_rng([self.spec.seed, 0xC0FFEE])
        self._models()
        self._channels()
        self._users()
        self._tokens()

    # -- catalogue ---------------------------------------------------------------------
    def _models(self) -> None:
        self.model_names = [m[0] for m in MODELS]
        self.model_ratio = np.array([m[1] for m in MODELS])
        self.completion_ratio = np.array([m[2] for m in MODELS])
        self.model_kind = [m[3] for m in MODELS]
        pop = np.array([m[4] for m in MODELS])
        self.model_p = pop / pop.sum()
        self.cache_ratio = np.array([m[5] for m in MODELS])
        self.model_price = np.array([IMAGE_PRICES.get(m[0], -1.0) for m in MODELS])

    def _channels(self) -> None:
        names: list[str] = []
        serves: list[list[int]] = []
        for vendor, prefixes in CHANNEL_VENDORS:
            copies = 1 + int(self.rng.integers(0, 4))
            for copy in range(copies):
                names.append(vendor if copy == 0 else f"{vendor} {copy + 1}")
                serves.append([i for i, m in enumerate(self.model_names) if m.startswith(prefixes)])
        self.channel_ids = np.arange(1, len(names) + 1, dtype=np.uint32)
        self.channel_names = names
        width = max(len(s) for s in serves)
        table = np.zeros((len(MODELS), width * len(names)), dtype=np.uint32)
        counts = np.zeros(len(MODELS), dtype=np.int64)
        for channel, models in enumerate(serves):
            for model in models:
                table[model, counts[model]] = channel + 1
                counts[model] += 1
        if (counts == 0).any():  # pragma: no cover - catalogue invariant
            raise AssertionError("a model without a channel")
        self.channels_for_model = table[:, : counts.max()]
        self.channel_counts = counts

    def _users(self) -> None:
        n = self.spec.users
        rng = self.rng
        self.user_ids = np.arange(1, n + 1, dtype=np.uint64)
        # Zipf-like activity, with the heavy users spread over the id range.
        weights = 1.0 / np.arange(1, n + 1) ** 1.1
        weights = weights[rng.permutation(n)]
        self.user_p = weights / weights.sum()
        prefixes = rng.integers(0, len(USER_PREFIXES), n)
        self.usernames = [f"{USER_PREFIXES[p]}{i + 1}" for i, p in enumerate(prefixes)]
        shares = np.array([g[2] for g in GROUPS])
        self.user_group = rng.choice(len(GROUPS), n, p=shares / shares.sum())
        self.group_names = [g[0] for g in GROUPS]
        self.group_ratio = np.array([g[1] for g in GROUPS])
        self.user_english = rng.random(n) < 0.25
        self.user_model = rng.choice(len(MODELS), n, p=self.model_p)
        records_ip = rng.random(n) < 0.3
        octets = rng.integers(1, 255, (n, 4))
        self.user_ip = [
            f"{a}.{b}.{c}.{d}" if keep else ""
            for (a, b, c, d), keep in zip(octets.tolist(), records_ip.tolist(), strict=True)
        ]

    def _tokens(self) -> None:
        n = self.spec.users
        counts = np.minimum(1 + self.rng.geometric(0.45, n) - 1, 12)
        self.token_first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.token_count = counts.astype(np.int64)
        total = int(counts.sum())
        self.token_ids = np.arange(1, total + 1, dtype=np.uint64)
        self.token_user = np.repeat(self.user_ids, counts)
        names = self.rng.integers(0, len(TOKEN_NAMES), total)
        self.token_names = [
            TOKEN_NAMES[k] if i == 0 or k else f"token-{i}"
            for i, k in zip(
                (np.arange(total) - np.repeat(self.token_first, counts)).tolist(),
                names.tolist(),
                strict=True,
            )
        ]
        self.token_status = self.rng.choice(
            np.array([1, 2, 3, 4], dtype=np.uint8), total, p=[0.9, 0.05, 0.03, 0.02]
        )

    def token_keys(self) -> list[str]:
        return [token_key(self.spec.seed, int(i)) for i in self.token_ids]

    def tokens_table(self, version: int = 1) -> pa.Table:
        from service.tokenhash import hash_key

        return arrow_table(
            TOKENS,
            {
                "id": self.token_ids,
                "key_hash": [hash_key(k) for k in self.token_keys()],
                "name": self.token_names,
                "user_id": self.token_user,
                "status": self.token_status,
                "version": np.full(len(self.token_ids), version, np.uint64),
            },
        )

    # -- traffic over time ---------------------------------------------------------------
    @cached_property
    def minute_rows(self) -> np.ndarray:
        """Rows per minute over the whole range: waves, weekends, bursts; sums to rows."""
        spec = self.spec
        minutes = spec.days * 1440
        rng = np.random.default_rng([spec.seed, 0x7115])
        t = spec.start + 60 * np.arange(minutes)
        local_hour = ((t // 60) % 1440) / 60.0 + BEIJING_OFFSET_HOURS
        local_hour %= 24
        wave = (
            0.12
            + 1.0 * np.exp(-((local_hour - 10.5) ** 2) / 4.5)
            + 0.9 * np.exp(-((local_hour - 15.5) ** 2) / 5.0)
            + 0.75 * np.exp(-((local_hour - 21.0) ** 2) / 3.0)
        )
        weekday = ((t + BEIJING_OFFSET_HOURS * 3600) // 86400 + 3) % 7  # 0 = Monday
        wave = wave * np.where(weekday >= 5, 0.72, 1.0)
        wave = wave * (1.0 + 0.2 * np.arange(minutes) / max(minutes, 1))  # growth
        wave = wave * rng.lognormal(0.0, 0.18, minutes)
        self.bursts: list[tuple[int, int, int]] = []
        for _ in range(max(1, spec.days * 2)):
            begin = int(rng.integers(0, minutes))
            length = int(rng.integers(5, 45))
            wave[begin : begin + length] *= float(rng.uniform(3.0, 10.0))
            user = int(rng.choice(len(self.user_p), p=self.user_p))
            self.bursts.append((begin, min(begin + length, minutes), user))
        expected = spec.rows * wave / wave.sum()
        counts = np.floor(expected).astype(np.int64)
        short = spec.rows - int(counts.sum())
        if short:
            order = np.argsort(-(expected - counts), kind="stable")[:short]
            counts[order] += 1
        return np.asarray(counts, dtype=np.int64)

    def chunks(self) -> list[tuple[int, int, int]]:
        """(first minute, end minute, first row) of each chunk of about CHUNK_ROWS rows."""
        counts = self.minute_rows
        cumulative = np.cumsum(counts)
        out: list[tuple[int, int, int]] = []
        minute, row = 0, 0
        while minute < len(counts):
            target = row + CHUNK_ROWS
            end = int(np.searchsorted(cumulative, target, side="right"))
            end = max(end, minute + 1)
            out.append((minute, end, row))
            row = int(cumulative[end - 1])
            minute = end
        return [c for c in out if int(counts[c[0] : c[1]].sum()) > 0]

    # -- one chunk -------------------------------------------------------------------------
    def chunk(self, number: int, first_minute: int, end_minute: int, first_row: int) -> pa.Table:
        spec = self.spec
        rng = np.random.default_rng([spec.seed, number])
        counts = self.minute_rows[first_minute:end_minute]
        n = int(counts.sum())
        minute = np.repeat(np.arange(first_minute, end_minute), counts)
        created = spec.start + minute * 60 + rng.integers(0, 60, n)
        created.sort()

        users = rng.choice(len(self.user_p), n, p=self.user_p)
        burst_minute = np.zeros(end_minute - first_minute, dtype=np.int64) - 1
        for begin, stop, user in self.bursts:
            lo, hi = max(begin, first_minute), min(stop, end_minute)
            if lo < hi:
                burst_minute[lo - first_minute : hi - first_minute] = user
        in_burst = burst_minute[minute - first_minute]
        take_burst = (in_burst >= 0) & (rng.random(n) < 0.6)
        users = np.where(take_burst, in_burst, users)

        type_codes = np.array([t for t, _ in TYPE_SHARES], dtype=np.uint8)
        shares = np.array([s for _, s in TYPE_SHARES])
        types = type_codes[rng.choice(len(type_codes), n, p=shares / shares.sum())]
        request = (types == 2) | (types == 5)

        favourite = rng.random(n) < 0.45
        models = np.where(
            favourite, self.user_model[users], rng.choice(len(MODELS), n, p=self.model_p)
        )
        pick = (rng.random(n) * self.channel_counts[models]).astype(np.int64)
        channels = self.channels_for_model[models, pick]
        tpick = (rng.random(n) ** 2.5 * self.token_count[users]).astype(np.int64)
        tokens = self.token_first[users] + tpick  # index into token arrays
        groups = self.user_group[users]

        kinds = np.array(self.model_kind)[models]
        is_chat = (kinds == "chat") | (kinds == "claude")
        prompt = np.rint(rng.lognormal(6.7, 1.3, n)).astype(np.int64)
        completion = np.rint(rng.lognormal(5.4, 1.1, n)).astype(np.int64)
        completion = np.where(is_chat, completion, 0)
        prompt = np.where(kinds == "image", rng.integers(8, 120, n), prompt)
        cached = np.where(
            (self.cache_ratio[models] > 0) & (rng.random(n) < 0.35),
            (prompt * rng.uniform(0.2, 0.95, n)).astype(np.int64),
            0,
        )
        mr = self.model_ratio[models]
        cr = self.completion_ratio[models]
        gr = self.group_ratio[groups]
        price = self.model_price[models]
        billed = (
            prompt - cached + cached * np.maximum(self.cache_ratio[models], 0) + completion * cr
        )
        quota = np.where(
            price >= 0, price * QUOTA_PER_UNIT * gr, np.maximum(billed * mr * gr, 1)
        ).astype(np.int64)
        stream = is_chat & (rng.random(n) < 0.78)
        frt = np.where(stream, np.rint(rng.lognormal(6.4, 0.7, n)), -1000).astype(np.int64)
        speed = rng.lognormal(3.9, 0.5, n)  # tokens per second
        use_time = np.ceil(np.maximum(frt, 300) / 1000 + completion / speed).astype(np.int32)

        status_idx = rng.integers(0, len(ERRORS), n)
        is_error = types == 5
        is_consume = types == 2
        prompt = np.where(is_consume, prompt, 0)
        completion = np.where(is_consume, completion, 0)
        use_time = np.where(request, np.where(is_error, np.minimum(use_time, 30), use_time), 0)
        stream = stream & request
        topup_amount = np.array([5, 10, 20, 50, 100, 200, 500])[rng.integers(0, 7, n)]
        quota = np.select(
            [is_consume, types == 1, types == 6, types == 4],
            [quota, topup_amount * QUOTA_PER_UNIT, quota // 2, QUOTA_PER_UNIT // 2],
            0,
        ).astype(np.int64)
        models = np.where(request | (types == 6), models, -1)
        channels = np.where(request, channels, 0).astype(np.uint32)
        tokens_used = np.where(request | (types == 6), tokens, -1)

        english = self.user_english[users]
        strings = _Strings(self, rng, n)
        return arrow_table(
            LOGS,
            {
                "id": np.arange(spec.first_id + first_row, spec.first_id + first_row + n),
                "user_id": self.user_ids[users],
                "created_at": created.astype(np.uint32),
                "type": types,
                "content": strings.content(types, models, groups, english, status_idx,
                                           topup_amount),
                "username": strings.take(self.usernames, users),
                "token_name": strings.take_or_empty(self.token_names, tokens_used),
                "model_name": strings.take_or_empty(self.model_names, models),
                "quota": quota,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "use_time": use_time,
                "is_stream": stream,
                "channel_id": channels,
                "channel_name": strings.take_or_empty(
                    self.channel_names, channels.astype(np.int64) - 1
                ),
                "token_id": np.where(tokens_used >= 0, tokens_used + 1, 0).astype(np.uint64),
                "group": strings.take(self.group_names, groups),
                "ip": strings.take(self.user_ip, users),
                "request_id": strings.request_ids(created, request),
                "upstream_request_id": pa.repeat(pa.scalar(""), n),
                "other": strings.other(types, models, channels, groups, cached, frt, status_idx),
            },
        )  # fmt: skip

    def batches(self) -> Iterator[tuple[int, pa.Table]]:
        for number, (lo, hi, row) in enumerate(self.chunks()):
            yield number, self.chunk(number, lo, hi, row)


@lru_cache(maxsize=64)
def _unique(values: tuple[str, ...]) -> tuple[pa.Array, np.ndarray]:
    """A dictionary without repeats (the engine rejects repeated dictionary values) and
    the map from positions in ``values`` to positions in it."""
    first: dict[str, int] = {}
    remap = np.fromiter((first.setdefault(v, len(first)) for v in values), np.int32, len(values))
    return pa.array(list(first), pa.string()), remap


class _Strings:
    """Vectorised string columns: dictionaries taken by index, pieces joined in C."""

    def __init__(self, world: World, rng: np.random.Generator, n: int) -> None:
        self.world = world
        self.rng = rng
        self.n = n

    @staticmethod
    def take(values: list[str], index: np.ndarray) -> pa.Array:
        """``values[index]`` as a dictionary array: no string is copied per row."""
        dictionary, remap = _unique(tuple(values))
        return pa.DictionaryArray.from_arrays(pa.array(remap[index]), dictionary)

    @staticmethod
    def take_or_empty(values: list[str], index: np.ndarray) -> pa.Array:
        """``values[index]``, and '' where index is negative."""
        return _Strings.take(["", *values], np.maximum(index.astype(np.int64) + 1, 0))

    @staticmethod
    def plain(values: list[str], index: np.ndarray) -> pa.Array:
        """``values[index]`` as a plain string array (for joining)."""
        return pa.array(values, pa.string()).take(pa.array(index.astype(np.int64)))

    def content(
        self,
        types: np.ndarray,
        models: np.ndarray,
        groups: np.ndarray,
        english: np.ndarray,
        status_idx: np.ndarray,
        topup: np.ndarray,
    ) -> pa.Array:
        w = self.world
        texts: list[str] = []
        # consume: one text per (model, group, language)
        for m in range(len(MODELS)):
            for g in range(len(GROUPS)):
                mr, cr, gr = w.model_ratio[m], w.completion_ratio[m], w.group_ratio[g]
                if w.model_price[m] >= 0:
                    zh = f"模型价格 {w.model_price[m]:.2f}，分组倍率 {gr:.2f}"
                    en = f"Model price {w.model_price[m]:.2f}, group ratio {gr:.2f}"
                else:
                    zh = f"模型倍率 {mr:.2f}，补全倍率 {cr:.2f}，分组倍率 {gr:.2f}"
                    en = f"Model ratio {mr:.2f}, completion ratio {cr:.2f}, group ratio {gr:.2f}"
                texts += [zh, en]
        base_error = len(texts)
        texts += [e[3] for e in ERRORS]
        base_topup = len(texts)
        amounts = [5, 10, 20, 50, 100, 200, 500]
        for a in amounts:
            texts += [
                f"通过兑换码充值 ${a:.6f} 额度，兑换码ID {a * 37 + 11}",
                f"使用在线充值成功，充值金额: ${a:.2f}，支付金额：{a * 7.2:.2f}",
                f"Top-up of ${a:.2f} via redemption code",
            ]
        others = {
            4: ["新用户注册赠送 $0.50 额度", "邀请用户赠送 $0.20 额度",
                "System: monthly quota reset", "签到奖励 $0.10 额度"],
            3: ["管理员将用户额度从 $1.00修改为 $10.00", "管理员禁用了令牌 default",
                "Admin changed the user's group from default to vip"],
            6: ["异步任务执行失败，退还额度 $0.04", "Refund for failed task: mj_imagine",
                "流式请求中断，退还预扣费额度"],
            7: ["用户登录成功（密码）", "User logged in via GitHub OAuth", "用户登录成功（微信）",
                "Passkey login succeeded"],
        }  # fmt: skip
        offsets: dict[int, tuple[int, int]] = {}
        for t, lines in others.items():
            offsets[t] = (len(texts), len(lines))
            texts += lines
        n = self.n
        consume_idx = (models.clip(0) * len(GROUPS) + groups) * 2 + english
        error_idx = base_error + status_idx
        amount_idx = np.searchsorted(np.array(amounts), topup)
        topup_idx = base_topup + amount_idx * 3 + self.rng.integers(0, 3, n)
        index = np.select([types == 2, types == 5, types == 1], [consume_idx, error_idx, topup_idx],
                          0)  # fmt: skip
        for t, (start, count) in offsets.items():
            index = np.where(types == t, start + self.rng.integers(0, count, n), index)
        return self.take(texts, index)

    def request_ids(self, created: np.ndarray, request: np.ndarray) -> pa.Array:
        """The gateway's request ids: local time, nanoseconds, 8 random characters."""
        local = (created + BEIJING_OFFSET_HOURS * 3600).astype(np.int64)
        day = local.astype("datetime64[s]").astype("datetime64[D]")
        month = day.astype("datetime64[M]")
        year = month.astype("datetime64[Y]").astype(np.int64) + 1970
        clock = local % 86400
        stamp = (
            year * 10**10
            + (month.astype(np.int64) % 12 + 1) * 10**8
            + ((day - month).astype(np.int64) + 1) * 10**6
            + (clock // 3600) * 10**4
            + (clock // 60 % 60) * 100
            + clock % 60
        )
        when = pc.cast(pa.array(stamp), pa.string())
        nanos = pc.utf8_lpad(
            pc.cast(pa.array(self.rng.integers(0, 10**9, self.n)), pa.string()), 9, "0"
        )
        letters = ALPHABET[self.rng.integers(0, len(ALPHABET), (self.n, 8))]
        tails = pa.array(letters.view("S8").ravel()).cast(pa.string())
        ids = pc.binary_join_element_wise(when, nanos, tails, "")
        return pc.if_else(pa.array(request), ids, "")

    def other(
        self,
        types: np.ndarray,
        models: np.ndarray,
        channels: np.ndarray,
        groups: np.ndarray,
        cached: np.ndarray,
        frt: np.ndarray,
        status_idx: np.ndarray,
    ) -> pa.Array:
        """``other`` as the gateway writes it: a JSON object with sorted keys (Go's
        encoding of a map), built from per-model and per-group pieces joined in C."""
        w = self.world
        n = self.n
        m = models.clip(0)

        def num(values: np.ndarray) -> pa.Array:
            return pc.cast(pa.array(values), pa.string())

        def g(value: float) -> str:  # Go prints float64 in its shortest form: 1, 0.5, 8.33
            return format(float(value), "g")

        paths = [REQUEST_PATHS[k] for k in w.model_kind]
        cache_piece = [f'"]}},"cache_ratio":{g(c)},"cache_tokens":' for c in w.cache_ratio]
        ratio_piece = [f',"completion_ratio":{g(c)},"frt":' for c in w.completion_ratio]
        tail_piece = [
            f',"group_ratio":{g(gr)},"model_price":{g(w.model_price[i])},'
            f'"model_ratio":{g(w.model_ratio[i])},"request_path":"{paths[i]}",'
            '"user_group_ratio":-1}'
            for i in range(len(MODELS))
            for gr in w.group_ratio
        ]
        retried = self.rng.random(n) < 0.08
        use_channel = num(channels)
        if retried.any():
            first = (channels[retried] + 3) % len(w.channel_names) + 1
            use_channel = pc.replace_with_mask(
                use_channel,
                pa.array(retried),
                pc.binary_join_element_wise(num(first), '","', num(channels[retried]), ""),
            )
        consume = pc.binary_join_element_wise(
            '{"admin_info":{"use_channel":["',
            use_channel,
            self.plain(cache_piece, m),
            num(cached),
            self.plain(ratio_piece, m),
            num(frt),
            self.plain(tail_piece, m * len(GROUPS) + groups),
            "",
        )
        is_error = types == 5
        if is_error.any():
            rows = np.nonzero(is_error)[0]
            error_piece = [f'"]}},"error_code":"{e[2]}","error_type":"{e[1]}","request_path":"'
                           for e in ERRORS]  # fmt: skip
            status_piece = [f'","status_code":{e[0]}}}' for e in ERRORS]
            errors = pc.binary_join_element_wise(
                '{"admin_info":{"use_channel":["',
                use_channel.take(pa.array(rows)),
                self.plain(error_piece, status_idx[rows]),
                self.plain(paths, m[rows]),
                self.plain(status_piece, status_idx[rows]),
                "",
            )
            consume = pc.replace_with_mask(consume, pa.array(is_error), errors)
        return pc.if_else(pa.array((types == 2) | is_error), consume, "")


# -- writing into the engine ----------------------------------------------------------------


async def write(
    store: Any, spec: Spec, progress: bool = True, world: World | None = None
) -> tuple[int, float]:
    """Generate ``spec`` into the engine; returns (rows, seconds). Generation of the next
    chunk (numpy/pyarrow, mostly outside the GIL) overlaps the engine's insert."""
    from service.bulk import insert_table, progress_bar

    world = world or World(spec)
    spec = world.spec
    await insert_table(
        store, "tokens", world.tokens_table(version=1), f"generate:{_fingerprint(spec)}:tokens"
    )
    chunks = world.chunks()
    bar = progress_bar(spec.rows, "generate", progress)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    pending: asyncio.Future[pa.Table] | None = None
    written = 0
    try:
        for number, (lo, hi, row) in enumerate(chunks):
            if pending is None:
                pending = loop.run_in_executor(None, world.chunk, number, lo, hi, row)
            table = await pending
            pending = None
            if number + 1 < len(chunks):
                nlo, nhi, nrow = chunks[number + 1]
                pending = loop.run_in_executor(None, world.chunk, number + 1, nlo, nhi, nrow)
            written += await insert_table(
                store, "logs", table, f"generate:{_fingerprint(spec)}:{number}"
            )
            bar.update(table.num_rows)
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)
        bar.close()
    return written, time.perf_counter() - started


def _fingerprint(spec: Spec) -> str:
    text = f"{spec.rows}:{spec.days}:{spec.seed}:{spec.end}:{spec.first_id}:{spec.users}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, required=True, help="how many log rows")
    p.add_argument("--days", type=int, default=30, help="spread over this many days (30)")
    p.add_argument("--seed", type=int, default=1, help="same seed and --end, same data (1)")
    p.add_argument(
        "--end",
        type=int,
        default=0,
        help="Unix time the data ends at (default: the end of the current minute)",
    )
    p.add_argument("--first-id", type=int, default=1, help="id of the oldest row (1)")
    p.add_argument("--users", type=int, default=0, help="number of users (default rows/250)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.rows < 1 or args.days < 1 or args.first_id < 1 or args.users < 0:
        print("gatelog: --rows, --days and --first-id must be positive", file=sys.stderr)
        return 2
    spec = Spec(args.rows, args.days, args.seed, args.end, args.first_id, args.users).resolved()

    rows, seconds = with_store(
        settings, lambda store: write(store, spec, progress=not args.no_progress), migrate=True
    )
    print(
        f"generated {rows} logs over {spec.days} days ending {spec.end} (seed {spec.seed}, "
        f"{spec.users} users) in {seconds:.1f} s: {rows / max(seconds, 1e-9):,.0f} rows/s"
    )
    return 0


COMMAND = Command(
    "generate", "write realistic synthetic logs and tokens into the engine", cmd_generate, _args
)
