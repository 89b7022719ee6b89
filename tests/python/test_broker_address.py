"""Broker addresses (ACB_BROKER, --broker, enable(broker=...)): the one reader,
acb._broker.parse_address, with IPv6 hosts in brackets."""

from __future__ import annotations

import pytest

import acb
from acb import _api
from acb._broker import format_address, parse_address
from acb._wire import BrokerError


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:43210", ("127.0.0.1", 43210)),
    ("localhost:1", ("localhost", 1)),
    ("gpu-node.example:65535", ("gpu-node.example", 65535)),
    ("[::1]:43210", ("::1", 43210)),
    ("[fe80::1%eth0]:5000", ("fe80::1%eth0", 5000)),
    ("  [::1]:7 ", ("::1", 7)),
])
def test_addresses_that_are_read(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("host, port", [("127.0.0.1", 43210), ("localhost", 1), ("::1", 7), ("fe80::1%eth0", 5000)])
def test_a_formatted_address_reads_back(host, port):
    assert parse_address(format_address(host, port)) == (host, port)


@pytest.mark.parametrize("text, hint", [
    ("localhost", "e.g. 127.0.0.1:43210"),
    (":43210", "e.g. 127.0.0.1:43210"),
    ("[]:43210", "IPv6 host in brackets"),
    ("host:", "e.g. 127.0.0.1:43210"),
    ("host:0", "e.g. 127.0.0.1:43210"),
    ("host:65536", "e.g. 127.0.0.1:43210"),
    ("host:+5", "e.g. 127.0.0.1:43210"),
    ("host:\u0665", "e.g. 127.0.0.1:43210"),  # a digit to str.isdigit, not a port
    ("::1:43210", "IPv6 host in brackets"),  # which colon ends the host?
    ("[::1:43210", "IPv6 host in brackets"),
    ("::1]:43210", "IPv6 host in brackets"),
    ("[::1]", "IPv6 host in brackets"),
])
def test_what_is_not_an_address_is_refused_with_the_text(text, hint):
    with pytest.raises(BrokerError) as raised:
        parse_address(text)
    assert repr(text) in str(raised.value)
    assert hint in str(raised.value)


def test_enable_broker_argument_errors_are_acb_errors():
    with pytest.raises(acb.AcbError, match=r"write an IPv6 host in brackets"):
        _api.resolve_broker("::1:43210")
    assert _api.resolve_broker("[::1]:43210") == ("::1", 43210)
