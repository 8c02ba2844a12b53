"""TwiML for inbound calls and transfers, parsed back as XML to check structure."""

from xml.etree import ElementTree

import pytest

from voicebridge.edge.twilio.twiml import TwimlError, connect_stream, dial, hangup

WSS = "wss://voice.example.com/twilio/media"


def _xml(text: str) -> ElementTree.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ElementTree.fromstring(text)  # noqa: S314 (our own output)


def test_connect_stream_has_url_parameters_callback_and_hangup_after() -> None:
    root = _xml(
        connect_stream(
            WSS,
            {"token": "tok", "agent": "sales"},
            status_callback="https://voice.example.com/twilio/stream-status",
        )
    )
    assert [c.tag for c in root] == ["Connect", "Hangup"]
    (stream,) = root.find("Connect")
    assert stream.tag == "Stream"
    assert stream.attrib == {
        "url": WSS,
        "statusCallback": "https://voice.example.com/twilio/stream-status",
        "statusCallbackMethod": "POST",
    }
    assert [(p.get("name"), p.get("value")) for p in stream] == [("token", "tok"), ("agent", "sales")]
    assert root.find(".//Pause") is None


def test_connect_stream_without_callback_or_hangup() -> None:
    root = _xml(connect_stream(WSS, {}, hangup_after=False))
    assert [c.tag for c in root] == ["Connect"]
    assert root.find("Connect/Stream").attrib == {"url": WSS}


def test_parameter_values_are_escaped() -> None:
    root = _xml(connect_stream(WSS, {"note": '<a & "b">'}))
    assert root.find(".//Parameter").get("value") == '<a & "b">'


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("wss://h/media?token=x", "query string"),
        ("wss://h/media?", "query string"),
        ("wss://h/media#x", "query string"),
        ("https://h/media", "wss://"),
        ("ws://h/media", "wss://"),
        ("/twilio/media", "wss://"),
    ],
)
def test_bad_stream_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(TwimlError, match=match):
        connect_stream(url, {})


def test_ws_allowed_only_for_local_peers() -> None:
    assert "ws://127.0.0.1:8000/twilio/media" in connect_stream(
        "ws://127.0.0.1:8000/twilio/media", {}, allow_insecure=True
    )


def test_parameter_name_plus_value_must_be_under_500_chars() -> None:
    connect_stream(WSS, {"token": "x" * (499 - len("token"))})
    with pytest.raises(TwimlError, match="under 500"):
        connect_stream(WSS, {"token": "x" * (500 - len("token"))})


def test_dial_number_then_hangup() -> None:
    root = _xml(dial("+15557654321", caller_id="+15550002222", timeout_s=20))
    assert [c.tag for c in root] == ["Dial", "Hangup"]
    d = root.find("Dial")
    assert d.attrib == {"callerId": "+15550002222", "timeout": "20"}
    assert d.find("Number").text == "+15557654321"


def test_dial_sip_uri_with_action_has_no_hangup() -> None:
    root = _xml(dial("sip:agent@pbx.example.com", action="https://voice.example.com/twilio/dial-done"))
    assert [c.tag for c in root] == ["Dial"]
    assert root.find("Dial/Sip").text == "sip:agent@pbx.example.com"


def test_dial_needs_a_destination() -> None:
    with pytest.raises(TwimlError, match="empty"):
        dial("")


def test_hangup() -> None:
    assert [c.tag for c in _xml(hangup())] == ["Hangup"]
