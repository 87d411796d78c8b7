"""medqa_scale.serve.access: logins from the environment only, the refusal to serve other machines
without them, and the per-user limit on asks (the page itself: tests/test_app.py).

Run: python -m pytest tests/test_access.py -q
"""

from __future__ import annotations

import pytest

from medqa_scale.core.cli import PipelineError
from medqa_scale.serve.access import RateLimit, check_exposure, credentials


def test_logins_come_from_the_variable_or_the_file_it_names(tmp_path):
    assert credentials({}) == []
    assert credentials({"MEDQA_APP_AUTH": "a:x, b:y:z"}) == [("a", "x"), ("b", "y:z")]
    f = tmp_path / "logins"
    f.write_text("# team\nnurse:pw1\n\ndoctor:pw2\n", encoding="utf-8")
    assert credentials({"MEDQA_APP_AUTH_FILE": str(f)}) == [("nurse", "pw1"), ("doctor", "pw2")]


@pytest.mark.parametrize("environ, message", [
    ({"MEDQA_APP_AUTH": "nurse"}, "MEDQA_APP_AUTH entry 1 is not user:password"),
    ({"MEDQA_APP_AUTH": "nurse:"}, "MEDQA_APP_AUTH entry 1 is not user:password"),
    ({"MEDQA_APP_AUTH_FILE": "/nonexistent/logins"}, "is not a file"),
])
def test_a_malformed_login_is_one_message_without_the_password(environ, message):
    with pytest.raises(PipelineError, match=message):
        credentials(environ)


def test_only_this_machine_may_be_served_without_a_login():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, [])
    check_exposure("0.0.0.0", [("a", "b")])
    with pytest.raises(PipelineError, match="--host 0.0.0.0 would serve every model.*MEDQA_APP_AUTH=user:password"):
        check_exposure("0.0.0.0", [])


def test_each_user_gets_its_own_sliding_minute():
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    assert [limit.wait("a"), limit.wait("a"), limit.wait("b")] == [0, 0, 0]
    assert limit.wait("a") == pytest.approx(60)
    now[0] = 59.0
    assert limit.wait("a") == pytest.approx(1)
    now[0] = 60.0
    assert limit.wait("a") == 0  # the first ask left the window
    assert RateLimit(0).wait("a") == 0  # 0: no limit
