import json

from binderhub_service.events import BuildEvent, Phase, failed, ready, sse_frame


def test_message_always_ends_with_newline():
    assert BuildEvent(Phase.BUILDING, "step").message == "step\n"
    assert BuildEvent(Phase.BUILDING, "step\n").message == "step\n"


def test_wire_form_uses_binderhub_field_names():
    event = ready("reg/img:abc", "Done! Image built")
    assert event.to_dict() == {
        "phase": "ready",
        "message": "Done! Image built\n",
        "imageName": "reg/img:abc",
    }
    assert failed("nope", 404).to_dict() == {
        "phase": "failed",
        "message": "nope\n",
        "status_code": 404,
    }


def test_event_without_phase_has_no_phase_field():
    assert BuildEvent(None, "plain").to_dict() == {"message": "plain\n"}


def test_round_trip_keeps_extra_fields():
    event = BuildEvent(Phase.WAITING, "queued", extra={"queue_position": 2})
    assert BuildEvent.from_dict(event.to_dict()) == event


def test_sse_frame_has_id_and_one_data_line():
    frame = sse_frame(7, BuildEvent(Phase.BUILDING, "two\nlines"))
    head, data, end = frame.decode().split("\n", 2)
    assert head == "id: 7"
    assert json.loads(data.removeprefix("data: "))["message"] == "two\nlines\n"
    assert end == "\n"


def test_final_phases():
    assert Phase.READY.is_final and Phase.FAILED.is_final
    assert not Phase.BUILT.is_final
    assert not BuildEvent(None, "x").is_final
