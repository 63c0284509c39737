"""Settings fail fast, naming the variable, and keep the timeouts in order."""

from __future__ import annotations

import pytest

from refunds.settings import ConfigError, Settings

pytestmark = pytest.mark.unit


def test_defaults_keep_time_limit_and_retry_delays_below_the_visibility_timeout() -> None:
    settings = Settings.from_env({})
    assert settings.task_time_limit < settings.visibility_timeout
    assert settings.retry_max_seconds < settings.visibility_timeout
    assert settings.max_retries == 8 and settings.max_body_bytes == 1_048_576


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REFUND_SINK_TASK_TIME_LIMIT": "300"}, "REFUND_SINK_TASK_TIME_LIMIT"),
        ({"REFUND_SINK_RETRY_MAX_SECONDS": "600"}, "REFUND_SINK_RETRY_MAX_SECONDS"),
        ({"REFUND_SINK_MAX_RETRIES": "many"}, "REFUND_SINK_MAX_RETRIES"),
        ({"REFUND_SINK_MAX_BODY_BYTES": "0"}, "REFUND_SINK_MAX_BODY_BYTES"),
        ({"REFUND_SINK_RETRY_BASE_SECONDS": "-1"}, "REFUND_SINK_RETRY_BASE_SECONDS"),
        ({"GENSTORE_NAIVE_TZ": "Mars/Olympus"}, "GENSTORE_NAIVE_TZ"),
        # renamed: one file per worker now, so the old name must not be silently ignored
        ({"REFUND_SINK_HEARTBEAT_FILE": "/tmp/hb"}, "REFUND_SINK_HEARTBEAT_DIR"),
    ],
)
def test_bad_values_fail_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_secrets_split_for_rotation_and_stay_out_of_repr() -> None:
    settings = Settings.from_env({"GENSTORE_WEBHOOK_SECRET": " new , old ,"})
    assert settings.genstore_secrets == ("new", "old")
    assert "new" not in repr(settings) and "old" not in repr(settings)
