"""The plugin's words for the errors of `b2bsim run --endpoint` (the pytest runs are in
test_pytest_plugin.py)."""

from __future__ import annotations

from simulator.kits.plugin_config import OPTIONS, plugin_words


def test_run_flags_become_the_plugin_s_options() -> None:
    line = (
        "error [ENDPOINT_UNUSABLE]: the endpoint https://h/b2b presents an untrusted "
        "certificate — pass the CA as --endpoint-ca (the AF test CA of --state: /s/pki/ca.pem); "
        "or give --endpoint-cert-sha256, --org-number, --readback or --endpoint URL"
    )
    words = plugin_words(line)
    for flag in ("endpoint-ca", "state", "endpoint-cert-sha256", "org-number", "readback"):
        assert f"--b2bsim-{flag}" in words
    assert "--b2bsim-endpoint URL" in words
    assert "--b2bsim-b2bsim" not in plugin_words(words)  # said once, however often applied


def test_every_option_has_its_ini_key() -> None:
    for option, ini, _, _ in OPTIONS:
        assert ini == option.lstrip("-").replace("-", "_")
