"""``moa-stability testbed``: one-line errors before any device process starts, and the
``--load RHO`` rates from the predicted service times (no device is ever started here)."""

from __future__ import annotations

import numpy as np
import pytest

from moa_stability import MoANetwork, loads
from moa_stability.cli import main
from moa_stability.cli import testbed as testbed_cli
from moa_stability.cli.testbed import predicted_network
from moa_stability.llm import measure
from moa_stability.llm.service import ContextService, LengthModel
from moa_stability.llm.trace import load_default_trace


def test_a_busy_machine_is_refused_before_any_device_starts(monkeypatch, capsys):
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert main(["testbed", "--n", "2", "--M", "1", "--k", "1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-stability testbed: error: loadavg_1min=5")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("flag", "value"), [("--out", "log.txt"), ("--rate", "x")])
def test_bad_testbed_flags_are_one_line_exit_2(flag, value, capsys):
    assert main(["testbed", flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"moa-stability testbed: error: {flag}=")


# ----------------------------------------------------------------------------- --load RHO


def _model_and_lengths():
    trace = load_default_trace()
    return ContextService.fit(trace), LengthModel.from_trace(trace)


def test_predicted_network_prices_the_capped_protocol():
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=0.01)
    predicted = predicted_network(net, 1)
    assert (predicted.n, predicted.M, tuple(predicted.k)) == (2, 1, (1,))
    np.testing.assert_array_equal(predicted.arrival_rate, net.arrival_rate)
    # A 1-token cap: every output is 1 token, so the propose job reads a plain prompt and the
    # aggregate reads it plus the instruction, the formatting and two 1-token responses. The
    # expected cost is the model's mean over the trace's prompts; the prediction averages
    # 20 000 draws of them, so it lies within 4 standard errors.
    model, lengths = _model_and_lengths()
    l_p = lengths.prompt_tokens
    aug = l_p + lengths.instruction_tokens + 2 * (lengths.per_response_tokens + 1)
    for row, l_in in ((0, l_p), (2, aug)):
        cost = model.mean(l_in, np.ones_like(l_in))
        se = cost.std() / np.sqrt(20_000)
        assert abs(predicted.service_time[row, 0] - cost.mean()) <= 4 * se + 1e-12
    longer = predicted_network(net, 128).service_time
    assert (longer[[0, 2], 0] > predicted.service_time[[0, 2], 0]).all()


def test_testbed_load_sets_the_busiest_device_to_rho(monkeypatch, capsys):
    started = []

    def fake_run_testbed(net, **kwargs):
        started.append((net, kwargs))
        raise ValueError("stop: no device is started in this test")

    monkeypatch.setattr(testbed_cli, "run_testbed", fake_run_testbed)
    argv = ["testbed", "--n", "2", "--M", "1", "--k", "1", "--load", "0.6", "--max-tokens", "32"]
    assert main(argv) == 2
    ((net, kwargs),) = started
    assert kwargs["max_tokens"] == 32
    expected = predicted_network(MoANetwork(n=2, M=1, k=1, arrival_rate=1.0), 32)
    np.testing.assert_allclose(net.service_time, expected.service_time, rtol=1e-12)
    # n = 2, k = 1: each device runs its own propose and aggregate and proposes for the other
    # device's prompts, so its load is rate * (2 alpha_p + alpha_a).
    alpha_p, alpha_a = net.service_time[0, 0], net.service_time[2, 0]
    np.testing.assert_allclose(net.arrival_rate, 0.6 / (2 * alpha_p + alpha_a), rtol=1e-9)
    assert loads(net).max() == pytest.approx(0.6, rel=1e-9)


def test_testbed_load_with_a_k_per_layer_is_refused_before_any_work(monkeypatch, capsys):
    def must_not_start(net, **kwargs):
        raise AssertionError("the testbed started")

    monkeypatch.setattr(testbed_cli, "run_testbed", must_not_start)
    argv = ["testbed", "--n", "3", "--M", "2", "--k", "2,1", "--load", "0.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-stability testbed: error: --k=2,1: --load needs one k")
    assert err.count("\n") == 1
    with pytest.raises(ValueError, match=r"^--k=2,1:"):
        predicted_network(MoANetwork(n=3, M=2, k=[2, 1], arrival_rate=0.01), 32)
