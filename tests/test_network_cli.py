"""``agentcell network`` and ``agentcell secrets`` against a live server: a policy built up by
allow/deny/forget/mode/reset, the admin's rules, a secret read from stdin and never printed,
and errors in the CLI's words."""

from __future__ import annotations

import io

import pytest

from tests.test_client_cli import api_key, assert_clean_error, cli_env, run

__all__ = ["api_key", "cli_env"]  # fixtures
pytestmark = pytest.mark.docker


@pytest.mark.usefixtures("api_key", "cli_env")
def test_a_policy_built_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "network", "show")
    assert code == 0
    assert "none (the admin's default" in out
    assert "agentcell network allow HOST" in out
    code, out, _ = run(capsys, "network", "allow", "*.Wikipedia.org", "api.github.com")
    assert code == 0
    assert "allowlist (yours" in out
    assert "*.wikipedia.org api.github.com" in out
    run(capsys, "network", "deny", "api.github.com", "ads.example.com")
    code, out, _ = run(capsys, "network", "show", "--json")
    assert '"allow": [\n    "*.wikipedia.org"\n  ]' in out
    assert '"api.github.com",\n    "ads.example.com"' in out
    run(capsys, "network", "forget", "ads.example.com")
    code, _, err = run(capsys, "network", "mode", "public")
    assert code == 1
    assert_clean_error(err)
    assert "wider than this server allows" in err
    code, _, err = run(capsys, "network", "allow", "http://x.org/")
    assert code == 1
    assert "not a host name" in err
    code, out, _ = run(capsys, "network", "admin", "--ceiling", "public", "--ports", "8443")
    assert code == 0
    assert "ceiling public" in out
    assert "ports 80 443 8443" in out
    assert run(capsys, "network", "mode", "public")[0] == 0
    code, out, _ = run(capsys, "network", "reset")
    assert "none (the admin's default" in out


@pytest.mark.usefixtures("api_key", "cli_env")
def test_a_secret_from_stdin_is_never_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cr3t-value\n"))
    code, out, err = run(capsys, "secrets", "set", "GITHUB_TOKEN", "--hosts", "api.github.com")
    assert code == 0, err
    assert "$GITHUB_TOKEN" in out
    assert "s3cr3t" not in out + err
    code, out, _ = run(capsys, "secrets", "ls")
    assert "GITHUB_TOKEN" in out
    assert "api.github.com" in out
    assert "s3cr3t" not in out
    code, out, _ = run(capsys, "exec", "--shell", "echo $GITHUB_TOKEN")
    assert out.startswith("agentcell-secret-github-token-")
    assert run(capsys, "secrets", "rm", "GITHUB_TOKEN")[0] == 0
    code, _, err = run(capsys, "secrets", "rm", "GITHUB_TOKEN")
    assert code == 1
    assert_clean_error(err)
    assert "agentcell secrets ls" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run(capsys, "secrets", "set", "EMPTY", "--hosts", "a.org")
    assert code == 1
    assert "no value given" in err
    code, out, _ = run(capsys, "audit", "--kind", "secret")
    assert "secret.put" in out
    assert "secret.delete" in out
