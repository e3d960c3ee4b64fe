"""Settings.from_env with explicit env dicts; never reads the real environment."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from liveserver.settings import MIN_SECRET_LENGTH, Settings, SettingsError

SECRET = "s" * 40
BASE = {"LIVESERVER_SECRET": SECRET}


def _env(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


def _fails(env: dict[str, str], **overrides: Any) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env, **overrides)
    msg = str(info.value)
    assert "\n" not in msg  # one line for stderr
    return msg


def test_settings_error_is_value_error() -> None:
    assert issubclass(SettingsError, ValueError)
    assert MIN_SECRET_LENGTH == 32


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.secret == SECRET
    assert s.host == "127.0.0.1"
    assert s.port == 8080
    assert s.redis_url is None
    assert s.redis_cluster is False
    assert s.dev is False
    assert s.workers == 1
    assert s.key_prefix == "ls:"
    assert s.log_level == "INFO"
    assert s.data_dir == Path(".liveserver")
    assert s.hello_timeout_s == 10.0


def test_missing_secret_without_dev() -> None:
    assert "LIVESERVER_SECRET" in _fails({})


def test_empty_secret_without_dev() -> None:
    assert "LIVESERVER_SECRET" in _fails({"LIVESERVER_SECRET": ""})


def test_dev_generates_secret() -> None:
    s = Settings.from_env({}, dev=True)
    assert s.dev is True
    assert isinstance(s.secret, str)
    assert len(s.secret) >= MIN_SECRET_LENGTH
    # a fresh one each time
    assert Settings.from_env({}, dev=True).secret != s.secret


def test_dev_keeps_a_given_secret() -> None:
    assert Settings.from_env(BASE, dev=True).secret == SECRET


def test_short_secret() -> None:
    msg = _fails({"LIVESERVER_SECRET": "x" * (MIN_SECRET_LENGTH - 1)})
    assert "too short" in msg
    assert "LIVESERVER_SECRET" in msg


def test_secret_of_min_length_accepted() -> None:
    assert Settings.from_env({"LIVESERVER_SECRET": "x" * MIN_SECRET_LENGTH}).secret == "x" * MIN_SECRET_LENGTH


def test_short_secret_override() -> None:
    assert "too short" in _fails({}, secret="short")


def test_redis_url_from_env() -> None:
    assert Settings.from_env(_env(REDIS_URL="redis://db:6379/0")).redis_url == "redis://db:6379/0"


@pytest.mark.parametrize("url", ["redis://h:1", "rediss://h:1", "unix:///tmp/redis.sock"])
def test_redis_url_schemes_accepted(url: str) -> None:
    assert Settings.from_env(_env(REDIS_URL=url)).redis_url == url


@pytest.mark.parametrize("url", ["http://h:6379", "h:6379", "REDIS://h", "tcp://h"])
def test_bad_redis_url_scheme(url: str) -> None:
    assert "REDIS_URL" in _fails(_env(REDIS_URL=url))


def test_empty_redis_url_env_means_none() -> None:
    assert Settings.from_env(_env(REDIS_URL="")).redis_url is None


def test_none_overrides_fall_through_to_env() -> None:
    env = _env(REDIS_URL="redis://env:6379", LIVESERVER_LOG_LEVEL="DEBUG", LIVESERVER_KEY_PREFIX="app:")
    s = Settings.from_env(env, redis_url=None, log_level=None, key_prefix=None, port=None, secret=None, dev=None)
    assert s.redis_url == "redis://env:6379"
    assert s.log_level == "DEBUG"
    assert s.key_prefix == "app:"
    assert s.port == 8080
    assert s.secret == SECRET
    assert s.dev is False


def test_overrides_win_over_env() -> None:
    env = _env(REDIS_URL="redis://env:6379")
    s = Settings.from_env(env, redis_url="redis://flag:6380", port=9000, secret="f" * 40)
    assert s.redis_url == "redis://flag:6380"
    assert s.port == 9000
    assert s.secret == "f" * 40


def test_data_dir_from_env_and_override_is_a_path() -> None:
    assert Settings.from_env(_env(LIVESERVER_DATA_DIR="/tmp/ls")).data_dir == Path("/tmp/ls")
    s = Settings.from_env(BASE, data_dir="/var/lib/ls")
    assert s.data_dir == Path("/var/lib/ls")
    assert isinstance(s.data_dir, Path)


@pytest.mark.parametrize("flag", ["1", "true", "TRUE", "yes"])
def test_redis_cluster_env_flag(flag: str) -> None:
    s = Settings.from_env(_env(LIVESERVER_REDIS_CLUSTER=flag, REDIS_URL="redis://node:7000"))
    assert s.redis_cluster is True


@pytest.mark.parametrize("flag", ["0", "false", "", "no"])
def test_redis_cluster_env_flag_off(flag: str) -> None:
    assert Settings.from_env(_env(LIVESERVER_REDIS_CLUSTER=flag)).redis_cluster is False


def test_redis_cluster_without_url() -> None:
    assert "REDIS_URL" in _fails(_env(LIVESERVER_REDIS_CLUSTER="1"))
    assert "--redis-cluster" in _fails(BASE, redis_cluster=True)


@pytest.mark.parametrize("workers", [0, 257, -1])
def test_workers_out_of_range(workers: int) -> None:
    assert "--workers" in _fails(BASE, workers=workers)


@pytest.mark.parametrize("workers", [1, 256])
def test_workers_bounds_accepted(workers: int) -> None:
    assert Settings.from_env(BASE, workers=workers).workers == workers


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_out_of_range(port: int) -> None:
    assert "--port" in _fails(BASE, port=port)


@pytest.mark.parametrize("prefix", ["has space", "a{b}", "p" * 33, "a/b", "ключ"])
def test_bad_key_prefix(prefix: str) -> None:
    assert "LIVESERVER_KEY_PREFIX" in _fails(_env(LIVESERVER_KEY_PREFIX=prefix))


@pytest.mark.parametrize("prefix", ["", "app1:", "p" * 32, "a.b_c-d:"])
def test_key_prefix_accepted(prefix: str) -> None:
    assert Settings.from_env(_env(LIVESERVER_KEY_PREFIX=prefix)).key_prefix == prefix


@pytest.mark.parametrize("level", ["verbose", "TRACE", "info2"])
def test_bad_log_level(level: str) -> None:
    assert "log level" in _fails(_env(LIVESERVER_LOG_LEVEL=level))


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "ERROR", "critical"])
def test_log_levels_case_insensitive(level: str) -> None:
    assert Settings.from_env(_env(LIVESERVER_LOG_LEVEL=level)).log_level == level


def test_frozen() -> None:
    s = Settings.from_env(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.secret = "x" * 40  # type: ignore[misc]
    assert s.port == 8080


def test_replace_returns_checked_copy() -> None:
    s = Settings.from_env(BASE)
    t = s.replace(port=9999, workers=4)
    assert (t.port, t.workers) == (9999, 4)
    assert (s.port, s.workers) == (8080, 1)
    assert t.secret == s.secret


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"workers": 0}, "--workers"),
        ({"secret": "short"}, "too short"),
        ({"redis_url": "http://x"}, "REDIS_URL"),
        ({"redis_cluster": True}, "--redis-cluster"),
        ({"key_prefix": "bad prefix"}, "LIVESERVER_KEY_PREFIX"),
        ({"log_level": "loud"}, "log level"),
        ({"presence_ttl_s": 0.5, "presence_beat_s": 0.5}, "presence_ttl_s"),
        ({"droppable_queue_frames": 2000}, "droppable_queue_frames"),
        ({"max_frame_bytes": 100_000}, "max_frame_bytes"),
    ],
)
def test_replace_checks(changes: dict[str, Any], needle: str) -> None:
    s = Settings.from_env(BASE)
    with pytest.raises(SettingsError) as info:
        s.replace(**changes)
    assert needle in str(info.value)


def test_replace_unknown_field_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Settings.from_env(BASE).replace(no_such_field=1)


def test_from_env_cross_field_checks() -> None:
    assert "presence_ttl_s" in _fails(BASE, presence_ttl_s=0.4, presence_beat_s=0.5)
    assert "send_queue_frames" in _fails(BASE, send_queue_frames=10, droppable_queue_frames=11)
    assert "hard_frame_bytes" in _fails(BASE, max_frame_bytes=10, hard_frame_bytes=9)


def test_pages_follow_dev_unless_asked_for() -> None:
    secret = {"LIVESERVER_SECRET": "s" * 32}
    assert Settings.from_env({}, dev=True).serve_pages is True
    assert Settings.from_env(secret).serve_pages is False
    assert Settings.from_env({**secret, "LIVESERVER_SERVE_PAGES": "1"}).serve_pages is True
    assert Settings.from_env({"LIVESERVER_SERVE_PAGES": "0"}, dev=True).serve_pages is False
