from tests.eventdata import load_event
def test_x():
    assert load_event("s3_put")
