"""pipeline.events: every envelope, event type, key encoding and malformed shape, plus identities."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable

import pytest

from pipeline.errors import MalformedEventError
from pipeline.events import MAX_BODY_BYTES, SEQUENCER_DIGITS, KeyFilter, ObjectEvent, parse_body, sequencer_order
from pipeline.settings import Settings

from tests.eventdata import load_event

BUCKET = "amzn-s3-demo-bucket"
TIME = "2024-05-14T09:26:01.812Z"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"
VERSION = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
SEQUENCER = "0055AED6DCD90281E5"
HAPPY = "content/images/HappyFace.jpg"
EB_TIME = "2024-05-14T09:26:01Z"
EB_ETAG = "b1946ac92492d2347c6235b4d2611184"
#: Accepts every key, to show what the parser itself returns before filtering.
EVERYTHING = KeyFilter(prefix="", suffixes=())


def created(key: str = HAPPY, **fields: Any) -> ObjectEvent:
    """The documented ObjectCreated:Put record, with ``fields`` changed."""
    values = dict(bucket=BUCKET, key=key, kind="created", event_name="ObjectCreated:Put", event_time=TIME,
                  version_id=VERSION, size=1024, etag=ETAG, sequencer=SEQUENCER, source="s3")
    return ObjectEvent(**{**values, **fields})


def unversioned(key: str = HAPPY, **fields: Any) -> ObjectEvent:
    return created(key, version_id=None, **fields)


def eventbridge(key: str, kind: str, event_name: str, **fields: Any) -> ObjectEvent:
    values = dict(version_id=None, size=None, etag=EB_ETAG, sequencer=None, source="eventbridge")
    return ObjectEvent(BUCKET, key, kind, event_name, EB_TIME, **{**values, **fields})


def edited(name: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The body of fixture ``name`` after ``change`` mutated its parsed JSON."""
    document = json.loads(load_event(name))
    change(document)
    return json.dumps(document)


def put_object(**changes: Any) -> str:
    """s3_put with fields of ``Records[0].s3.object`` replaced (None deletes one)."""

    def change(document: dict[str, Any]) -> None:
        obj = document["Records"][0]["s3"]["object"]
        for name, value in changes.items():
            obj.pop(name) if value is None else obj.__setitem__(name, value)

    return edited("s3_put", change)


def put_record(**changes: Any) -> str:
    """s3_put with top-level fields of ``Records[0]`` replaced (None deletes one)."""

    def change(document: dict[str, Any]) -> None:
        record = document["Records"][0]
        for name, value in changes.items():
            record.pop(name) if value is None else record.__setitem__(name, value)

    return edited("s3_put", change)


# -- well-formed payloads: the exhaustive table --------------------------------------------------

WELL_FORMED = [
    ("s3_put", [created()]),
    ("s3_put_unversioned", [unversioned()]),
    ("s3_put_version_null", [unversioned()]),
    (
        "s3_several_records",
        [
            unversioned(
                "content/images/one.jpg",
                size=100,
                etag="0cc175b9c0f1b6a831c399e269772661",
                sequencer="0066437A29B3B6F01A",
            ),
            unversioned(
                "content/images/two.png",
                event_name="ObjectCreated:CompleteMultipartUpload",
                event_time="2024-05-14T09:26:02.001Z",
                size=31457280,
                etag="4af981f98d22a0b9979da24b259e5e42-6",
                sequencer="0066437A2A1C8E2B3C",
            ),
            unversioned(
                "content/images/three.jpeg",
                event_name="ObjectCreated:Copy",
                event_time="2024-05-14T09:26:02.500Z",
                size=2048,
                etag="92eb5ffee6ae2fec3ad71c777531578f",
                sequencer="0066437A2A9F00AA11",
            ),
        ],
    ),
    (
        "moto_put",
        [
            ObjectEvent("moderation-uploads", "content/images/nested/my cat.jpg", "created", "ObjectCreated:Put", TIME,
                        size=5, etag=EB_ETAG)
        ],
    ),
    ("s3_removed_delete", [unversioned(kind="removed", event_name="ObjectRemoved:Delete", size=None, etag=None,
                                       sequencer="0055AED6DCD90281E6")]),
    ("s3_removed_delete_marker", [created(kind="removed", event_name="ObjectRemoved:DeleteMarkerCreated", size=None,
                                          version_id="1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
                                          sequencer="0055AED6DCD90281E7")]),
    ("s3_restore_completed", [created(kind="restored", event_name="ObjectRestore:Completed",
                                      event_time="2024-05-15T03:12:44.000Z", sequencer=None)]),
    ("s3_test_event", []),
    ("s3_object_tagging_put", []),
    ("s3_object_acl_put", []),
    ("s3_lifecycle_expiration", []),
    ("s3_restore_post", []),
    ("s3_tagging_and_put", [unversioned("content/images/new.png")]),
    ("sns_put", [unversioned("content/images/red flower.jpg", source="sns")]),
    ("sns_test_event", []),
    (
        "eventbridge_object_created",
        [eventbridge("content/images/summer photo+1 100%.jpg", "created", "Object Created", size=5,
                     version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", sequencer="617f08299329d189")],
    ),
    (
        "eventbridge_object_created_unversioned",
        [eventbridge("content/images/café.png", "created", "Object Created", size=184662,
                     etag="4e68adba0abe2dc8653dc3354e14c01d", sequencer="006408CAD69598B05E")],
    ),
    (
        "eventbridge_object_deleted",
        [eventbridge("content/images/example.jpg", "removed", "Object Deleted", etag=ETAG,
                     version_id="1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF", sequencer="617f0837b476e463")],
    ),
    (
        "eventbridge_restore_completed",
        [eventbridge("content/images/example.jpg", "restored", "Object Restore Completed", size=5,
                     version_id="KKsjUC1.6gIjqtvhfg5AdMI0eCePIiT3")],
    ),
    ("eventbridge_tags_added", []),
    ("eventbridge_acl_updated", []),
]


@pytest.mark.parametrize(("fixture", "expected"), WELL_FORMED, ids=[case[0] for case in WELL_FORMED])
def test_parse_body_returns_the_documented_events(fixture: str, expected: list[ObjectEvent]) -> None:
    assert parse_body(load_event(fixture)) == expected


@pytest.mark.parametrize(("fixture", "expected"), WELL_FORMED, ids=[case[0] for case in WELL_FORMED])
def test_bytes_and_text_bodies_parse_alike(fixture: str, expected: list[ObjectEvent]) -> None:
    assert parse_body(load_event(fixture).encode("utf-8")) == expected


@pytest.mark.parametrize(
    ("index", "key"),
    [
        (0, "content/images/red flower.jpg"),  # "+" is a space
        (1, "content/images/c++ logo.png"),  # "%2B" is a plus
        (2, "content/images/café crème.jpg"),  # UTF-8 percent escapes
        (3, "content/images/猫🐈.jpeg"),  # 3- and 4-byte UTF-8
        (4, "content/images/2024-05-14 10:00:00 (1).jpg"),
        (5, "content/images/100% real.png"),  # "%25" is a percent sign
    ],
)
def test_s3_keys_are_url_decoded(index: int, key: str) -> None:
    assert parse_body(load_event("s3_encoded_keys"))[index].key == key


def test_moto_percent_encoded_slashes_are_decoded_before_filtering() -> None:
    # Given moto's key "content%2Fimages%2Fnested%2Fmy+cat.jpg", the default prefix still matches
    assert [event.key for event in parse_body(load_event("moto_put"))] == ["content/images/nested/my cat.jpg"]


def test_eventbridge_keys_are_used_verbatim() -> None:
    # EventBridge does not URL-encode keys (see pipeline.events): "+" and "%" stay what they are.
    [event] = parse_body(load_event("eventbridge_object_created"))
    assert event.key == "content/images/summer photo+1 100%.jpg"


def test_sns_and_direct_delivery_of_one_event_are_the_same_work() -> None:
    [via_sns] = parse_body(load_event("sns_put"))
    direct = parse_body(load_event("s3_encoded_keys"))[0]
    assert (via_sns.source, direct.source) == ("sns", "s3")
    assert via_sns.work_id == direct.work_id


# -- ignored event types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    ["s3_object_tagging_put", "eventbridge_tags_added", "s3_object_acl_put", "eventbridge_acl_updated",
     "s3_lifecycle_expiration", "s3_restore_post", "s3_test_event", "sns_test_event"],
)
def test_ignored_events_never_come_back_as_work_whatever_the_filter(fixture: str) -> None:
    assert parse_body(load_event(fixture), EVERYTHING) == []


@pytest.mark.parametrize(
    ("event_name", "kind"),
    [
        ("ObjectCreated:Put", "created"),
        ("ObjectCreated:Post", "created"),
        ("ObjectCreated:Copy", "created"),
        ("ObjectCreated:CompleteMultipartUpload", "created"),
        ("ObjectRemoved:Delete", "removed"),
        ("ObjectRemoved:DeleteMarkerCreated", "removed"),
        ("ObjectRestore:Completed", "restored"),
        ("s3:ObjectCreated:Put", "created"),  # S3-compatible stores (MinIO) keep the "s3:" prefix
        ("ObjectRestore:Post", None),
        ("ObjectRestore:Delete", None),
        ("ObjectTagging:Put", None),
        ("ObjectTagging:Delete", None),
        ("ObjectAcl:Put", None),
        ("LifecycleExpiration:Delete", None),
        ("LifecycleExpiration:DeleteMarkerCreated", None),
        ("LifecycleTransition", None),
        ("IntelligentTiering", None),
        ("Replication:OperationFailedReplication", None),
        ("Replication:OperationMissedThreshold", None),
        ("Replication:OperationReplicatedAfterThreshold", None),
        ("Replication:OperationNotTracked", None),
        ("ReducedRedundancyLostObject", None),
    ],
)
def test_event_name_families(event_name: str, kind: str | None) -> None:
    events = parse_body(put_record(eventName=event_name))
    assert [event.kind for event in events] == ([kind] if kind else [])
    assert all(event.event_name == event_name for event in events)  # kept as sent


@pytest.mark.parametrize(
    ("detail_type", "kind"),
    [
        ("Object Created", "created"),
        ("Object Deleted", "removed"),
        ("Object Restore Completed", "restored"),
        ("Object Restore Initiated", None),
        ("Object Restore Expired", None),
        ("Object Storage Class Changed", None),
        ("Object Access Tier Changed", None),
        ("Object ACL Updated", None),
        ("Object Tags Added", None),
        ("Object Tags Deleted", None),
    ],
)
def test_eventbridge_detail_types(detail_type: str, kind: str | None) -> None:
    body = edited("eventbridge_object_created", lambda document: document.update({"detail-type": detail_type}))
    assert [event.kind for event in parse_body(body)] == ([kind] if kind else [])


# -- key filtering -------------------------------------------------------------------------------


def test_default_filter_keeps_the_app_s_images_only() -> None:
    keys = [event.key for event in parse_body(load_event("s3_key_filtering"))]
    assert keys == ["content/images/UPPER.JPG", "content/images/Mixed.JpEg", "content/images/slashed.png"]


def test_a_custom_filter_selects_other_keys() -> None:
    gifs = KeyFilter(prefix="content/", suffixes=(".GIF",))
    assert [event.key for event in parse_body(load_event("s3_key_filtering"), gifs)] == ["content/images/anim.gif"]


@pytest.mark.parametrize(
    ("key", "matches"),
    [
        ("content/images/a.jpg", True),
        ("content/images/a.JPG", True),
        ("content/images/a.Jpeg", True),
        ("content/images/a.png", True),
        ("content/images/deeper/still/a.png", True),
        ("content/images/a.gif", False),
        ("content/images/a.jpg.gif", False),
        ("content/images/ajpg", False),
        ("content/images/", False),
        ("avatars/a.jpg", False),
        ("Content/Images/a.jpg", False),  # S3 keys are case-sensitive, so is the prefix
        ("content/imagesX/a.jpg", False),
        ("xcontent/images/a.jpg", False),
    ],
)
def test_key_filter_matches(key: str, matches: bool) -> None:
    assert KeyFilter().matches(key) is matches


def test_key_filter_without_suffixes_matches_any_key_under_the_prefix() -> None:
    assert KeyFilter(prefix="p/", suffixes=()).matches("p/anything") is True
    assert KeyFilter(prefix="p/", suffixes=()).matches("q/anything") is False


def test_key_filter_from_settings() -> None:
    settings = Settings(prefix="uploads/", suffixes=(".webp", ".avif"))
    assert KeyFilter.from_settings(settings) == KeyFilter(prefix="uploads/", suffixes=(".webp", ".avif"))
    assert KeyFilter.from_settings(Settings()) == KeyFilter()


# -- field normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"versionId": "null"}, "version_id", None),
        ({"versionId": ""}, "version_id", None),
        ({"versionId": None}, "version_id", None),
        ({"eTag": f'"{ETAG}"'}, "etag", ETAG),
        ({"eTag": None}, "etag", None),
        ({"size": None}, "size", None),
        ({"size": 0}, "size", 0),
        ({"sequencer": None}, "sequencer", None),
        ({"sequencer": "617f08299329d189"}, "sequencer", "617f08299329d189"),
        ({"sequencer": "A" * SEQUENCER_DIGITS}, "sequencer", "A" * SEQUENCER_DIGITS),
    ],
)
def test_optional_object_fields(changes: dict[str, Any], field: str, value: Any) -> None:
    [event] = parse_body(put_object(**changes))
    assert getattr(event, field) == value


def test_null_optional_fields_count_as_absent() -> None:
    # JSON null where S3 would omit the field (moto writes "version-id": null for EventBridge).
    nulls = {"version-id": None, "size": None}
    body = edited("eventbridge_object_created", lambda d: d["detail"]["object"].update(nulls))
    [event] = parse_body(body)
    assert (event.version_id, event.size) == (None, None)


# -- malformed bodies ----------------------------------------------------------------------------

UNKNOWN_SHAPE = "unknown message shape: not an S3 notification, SNS notification or EventBridge event "
MALFORMED_FIXTURES = [
    ("malformed_list", "message body is JSON but not an object: got an array"),
    ("malformed_missing_key", "Records[0].s3.object: missing 'key'"),
    ("malformed_missing_bucket", "Records[0].s3.bucket: missing 'name'"),
    ("malformed_missing_records", UNKNOWN_SHAPE + '(top-level keys: "records")'),
    ("malformed_records_not_list", "Records must be a non-empty array, got an object"),
    ("malformed_size_string", 'Records[0].s3.object.size must be an integer, got a string "1024"'),
    ("malformed_unknown_event_name", 'Records[0]: unknown event name "ObjectExploded:Put"'),
    ("malformed_one_bad_record", 'Records[1].s3.object.sequencer is not a hex sequencer: "not-hex!"'),
    ("malformed_sns_message_not_json", "SNS Message is not JSON: Expecting value at line 1 column 1"),
    ("malformed_sns_message_not_string", "SNS Message must be a string holding S3's event JSON, got an object"),
    ("malformed_sns_message_wrong_shape", 'SNS Message is not an S3 event notification (keys: "Hello")'),
    ("malformed_unknown_shape", UNKNOWN_SHAPE + '(top-level keys: "Bucket", "Event", "Service")'),
    ("malformed_eventbridge_other_source", "EventBridge event from source \"aws.ec2\", not 'aws.s3'"),
    (
        "malformed_eventbridge_unknown_detail_type",
        'unknown EventBridge detail-type "AWS API Call via CloudTrail" from aws.s3',
    ),
    ("malformed_eventbridge_missing_key", "detail.object: missing 'key'"),
]


@pytest.mark.parametrize(("fixture", "message"), MALFORMED_FIXTURES, ids=[case[0] for case in MALFORMED_FIXTURES])
def test_malformed_fixtures(fixture: str, message: str) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_body(load_event(fixture))
    assert str(caught.value) == message
    assert caught.value.error_code == "MalformedEvent"


MALFORMED_INLINE = [
    ("not JSON", "this is not JSON", "message body is not JSON: Expecting value at line 1 column 1"),
    ("empty", "", "message body is not JSON: Expecting value at line 1 column 1"),
    ("truncated", load_event("s3_put")[:100], "message body is not JSON"),
    ("invalid UTF-8 bytes", b"\xff\xfe{}", "message body is not UTF-8: invalid byte at offset 0"),
    ("invalid UTF-8 inside JSON", b'{"Records": "\xc3("}', "message body is not UTF-8: invalid byte at offset 13"),
    ("lone surrogate", '{"Records": "\ud800"}', "message body is not UTF-8 text: unpaired surrogate at index 13"),
    ("not str or bytes", 42, "message body must be str or bytes, not int"),
    ("JSON number", "42", "message body is JSON but not an object: got an integer 42"),
    ("JSON string", '"Records"', 'message body is JSON but not an object: got a string "Records"'),
    ("JSON null", "null", "message body is JSON but not an object: got null"),
    ("deeply nested", "[" * 100_000, "message body is JSON nested too deeply"),
    ("empty object", "{}", UNKNOWN_SHAPE + "(top-level keys: none)"),
    ("empty Records", '{"Records": []}', "Records must be a non-empty array, got an empty array"),
    ("Records null", '{"Records": null}', "Records must be a non-empty array, got null"),
    ("record not an object", '{"Records": [42]}', "Records[0] must be an object, got an integer 42"),
    ("eventName missing", put_record(eventName=None), "Records[0]: missing 'eventName'"),
    ("eventName a number", put_record(eventName=7), "Records[0].eventName must be a string, got an integer 7"),
    ("eventName empty", put_record(eventName=""), "Records[0].eventName must not be empty"),
    ("bare family", put_record(eventName="ObjectCreated:"), 'Records[0]: unknown event name "ObjectCreated:"'),
    ("eventTime missing", put_record(eventTime=None), "Records[0]: missing 'eventTime'"),
    ("s3 missing", put_record(s3=None), "Records[0]: missing 's3'"),
    ("s3 a list", put_record(s3=[]), "Records[0].s3 must be an object, got an array"),
    ("key empty", put_object(key=""), "Records[0].s3.object.key must not be empty"),
    ("key a number", put_object(key=12), "Records[0].s3.object.key must be a string, got an integer 12"),
    ("key escape not UTF-8", put_object(key="content/images/%FF.jpg"),
     'Records[0].s3.object.key has percent escapes that are not UTF-8: "content/images/%FF.jpg"'),
    ("size a float", put_object(size=10.5), "Records[0].s3.object.size must be an integer, got a number 10.5"),
    ("size a boolean", put_object(size=True), "Records[0].s3.object.size must be an integer, got a boolean true"),
    ("size negative", put_object(size=-1), "Records[0].s3.object.size must not be negative, got -1"),
    ("eTag a number", put_object(eTag=5), "Records[0].s3.object.eTag must be a string, got an integer 5"),
    ("versionId an object", put_object(versionId={}), "Records[0].s3.object.versionId must be a string, got an object"),
    ("sequencer 0x", put_object(sequencer="0x55AE"), 'Records[0].s3.object.sequencer is not a hex sequencer: "0x55AE"'),
    ("sequencer too long", put_object(sequencer="A" * (SEQUENCER_DIGITS + 1)),
     "Records[0].s3.object.sequencer is not a hex sequencer"),
    ("SNS not a Notification", '{"Type": "SubscriptionConfirmation", "TopicArn": "arn:aws:sns:us-west-2:1:t"}',
     'SNS message of Type "SubscriptionConfirmation" is not a Notification'),
    ("SNS Message missing", '{"Type": "Notification"}',
     "SNS Message must be a string holding S3's event JSON, got null"),
    ("SNS Message a JSON array", '{"Type": "Notification", "Message": "[]"}',
     "SNS Message is JSON but not an object: got an array"),
    ("EventBridge time missing", edited("eventbridge_object_created", lambda d: d.pop("time")),
     "event: missing 'time'"),
    ("EventBridge detail missing", edited("eventbridge_object_created", lambda d: d.pop("detail")),
     "event: missing 'detail'"),
    ("EventBridge size a string", edited("eventbridge_object_created", lambda d: d["detail"]["object"].update(size="")),
     'detail.object.size must be an integer, got a string ""'),
    ("EventBridge bucket missing", edited("eventbridge_object_created", lambda d: d["detail"].pop("bucket")),
     "detail: missing 'bucket'"),
]


@pytest.mark.parametrize(
    ("body", "message"), [case[1:] for case in MALFORMED_INLINE], ids=[case[0] for case in MALFORMED_INLINE]
)
def test_malformed_bodies(body: Any, message: str) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_body(body)
    assert str(caught.value).startswith(message)


def test_body_of_exactly_the_limit_is_accepted_one_byte_more_is_not() -> None:
    # Given the documented put padded with trailing whitespace (still valid JSON) to the limit
    body = load_event("s3_put").rstrip()
    at_limit = body + " " * (MAX_BODY_BYTES - len(body.encode("utf-8")))
    # Then
    assert parse_body(at_limit) == [created()]
    expected = f"^message body is {MAX_BODY_BYTES + 1} bytes, over the {MAX_BODY_BYTES}-byte limit$"
    with pytest.raises(MalformedEventError, match=expected):
        parse_body(at_limit + " ")


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    body = '{"pad": "' + "é" * (MAX_BODY_BYTES // 2) + '"}'  # fewer characters than the limit, twice the bytes
    assert len(body) < MAX_BODY_BYTES
    with pytest.raises(MalformedEventError, match="over the 262144-byte limit"):
        parse_body(body)


@pytest.mark.parametrize(
    "body",
    [
        '{"pad": "' + "x" * MAX_BODY_BYTES + '"}',
        put_record(eventName="ObjectCreated" + "X" * 100_000),
        put_object(size="9" * 100_000),
        '{"Type": "Notification", "Message": "' + "y" * 100_000 + '"}',
        json.dumps({f"key{index}" * 50: index for index in range(1000)}),
    ],
    ids=["oversized", "huge event name", "huge size string", "huge SNS Message", "many huge keys"],
)
def test_error_messages_stay_short_whatever_the_body(body: str) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_body(body)
    assert len(str(caught.value)) < 400


def test_one_bad_record_makes_the_whole_message_malformed_even_after_good_ones() -> None:
    document = json.loads(load_event("s3_several_records"))
    document["Records"][2]["s3"]["object"]["size"] = "2048"
    with pytest.raises(MalformedEventError, match=r"^Records\[2\]\.s3\.object\.size"):
        parse_body(json.dumps(document))


def test_an_ignored_record_is_still_validated() -> None:
    body = edited("s3_object_tagging_put", lambda d: d["Records"][0]["s3"]["bucket"].pop("name"))
    with pytest.raises(MalformedEventError, match=r"missing 'name'"):
        parse_body(body)


def test_a_filtered_out_record_is_still_validated() -> None:
    body = edited("s3_put", lambda d: d["Records"][0]["s3"]["object"].update(key="avatars/a.gif", size="1"))
    with pytest.raises(MalformedEventError, match=r"size must be an integer"):
        parse_body(body)


# -- identity and work_id ------------------------------------------------------------------------


def sha256_of(identity: list[str]) -> str:
    return hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()


def test_versioned_identity_is_the_version() -> None:
    [event] = parse_body(load_event("s3_put"))
    assert event.identity == ("v", BUCKET, HAPPY, VERSION)
    assert event.work_id == sha256_of(["v", BUCKET, HAPPY, VERSION])


def test_unversioned_identity_is_etag_and_sequencer() -> None:
    [event] = parse_body(load_event("s3_put_unversioned"))
    assert event.identity == ("e", BUCKET, HAPPY, ETAG, SEQUENCER)
    assert event.work_id == sha256_of(["e", BUCKET, HAPPY, ETAG, SEQUENCER])


def test_null_version_is_unversioned_identity() -> None:
    [null_version] = parse_body(load_event("s3_put_version_null"))
    [no_version] = parse_body(load_event("s3_put_unversioned"))
    assert null_version.identity == no_version.identity == ("e", BUCKET, HAPPY, ETAG, SEQUENCER)


def test_without_sequencer_the_event_time_tells_uploads_apart() -> None:
    [event] = parse_body(load_event("moto_put"))
    assert event.identity == ("e", "moderation-uploads", "content/images/nested/my cat.jpg", EB_ETAG, TIME)
    assert unversioned(etag=None, sequencer=None).identity == ("e", BUCKET, HAPPY, "", TIME)


def test_same_bytes_reuploaded_to_an_unversioned_key_are_new_work() -> None:
    [first] = parse_body(load_event("s3_put_unversioned"))
    again = dataclasses.replace(first, sequencer="0055AED6DCD90281F0", event_time="2024-05-14T10:00:00.000Z")
    assert (again.etag, again.key) == (first.etag, first.key)
    assert again.work_id != first.work_id


def test_a_duplicate_delivery_is_the_same_work() -> None:
    body = load_event("s3_several_records")
    assert [e.work_id for e in parse_body(body)] == [e.work_id for e in parse_body(body)]


def test_a_new_version_is_new_work_and_the_same_version_is_not() -> None:
    assert created(version_id="v2").work_id != created().work_id
    # Same version: same work, even if S3 reports it again with another time or sequencer.
    assert created(sequencer="0055AED6DCD90281F0", event_time="2024-06-01T00:00:00.000Z").work_id == created().work_id


def test_work_ids_differ_across_buckets_and_keys() -> None:
    ids = {created().work_id, created(bucket="other").work_id, created("content/images/other.jpg").work_id}
    assert len(ids) == 3


def test_work_id_is_64_hex_digits() -> None:
    work_id = created().work_id
    assert len(work_id) == 64 and int(work_id, 16) >= 0


# -- JSON round trip -----------------------------------------------------------------------------

ALL_EVENTS = [event for _, events in WELL_FORMED for event in events]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=[f"{e.source}-{e.kind}-{e.key}" for e in ALL_EVENTS])
def test_to_dict_from_dict_round_trip_through_json(event: ObjectEvent) -> None:
    data = json.loads(json.dumps(event.to_dict()))
    assert ObjectEvent.from_dict(data) == event
    assert ObjectEvent.from_dict(data).work_id == event.work_id


def test_to_dict_is_plain_json_values() -> None:
    assert created().to_dict() == {
        "bucket": BUCKET, "key": HAPPY, "kind": "created", "event_name": "ObjectCreated:Put", "event_time": TIME,
        "version_id": VERSION, "size": 1024, "etag": ETAG, "sequencer": SEQUENCER, "source": "s3",
    }


def test_from_dict_ignores_unknown_keys() -> None:
    assert ObjectEvent.from_dict({**created().to_dict(), "added_later": 1}) == created()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bucket": BUCKET, "key": HAPPY}, "not an ObjectEvent dict"),
        ({**created().to_dict(), "kind": "exploded"}, "kind must be one of created, removed, restored"),
        ({**created().to_dict(), "source": "carrier-pigeon"}, "source must be one of s3, sns, eventbridge"),
        ([1, 2], "must be a mapping, not list"),
    ],
)
def test_from_dict_rejects_what_is_not_an_event(data: Any, message: str) -> None:
    with pytest.raises(MalformedEventError, match=message):
        ObjectEvent.from_dict(data)


def test_object_event_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        created(kind="modified")


# -- sequencer_order -----------------------------------------------------------------------------


def test_sequencer_order_same_length() -> None:
    assert sequencer_order("0055AED6DCD90281E5") < sequencer_order("0055AED6DCD90281E6")


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E501"),  # a longer one extending the shorter is later
        ("0055AED6DCD90281E50000", "0055AED6DCD90281E6"),  # AWS: right-pad, then compare: the shorter one is later
        ("0055AED6DCD90281E5", "0066437A29B3B6F01A"),
        ("617f08299329d189", "617f0837b476e463"),
    ],
)
def test_sequencer_order_different_lengths_right_pads_like_aws_says(earlier: str, later: str) -> None:
    assert sequencer_order(earlier) < sequencer_order(later)


def test_sequencer_order_is_not_plain_int_of_hex() -> None:
    # int(s, 16) inverts this pair of different lengths; AWS's rule (right-pad, then compare) does not.
    shorter, longer = "0055AED6DCD90281E6", "0055AED6DCD90281E50000"
    assert int(shorter, 16) < int(longer, 16)
    assert sequencer_order(shorter) > sequencer_order(longer)


def test_sequencer_order_trailing_zeros_and_case_do_not_matter() -> None:
    assert sequencer_order("0055AED6DCD90281E5") == sequencer_order("0055AED6DCD90281E500")
    assert sequencer_order("617f08299329d189") == sequencer_order("617F08299329D189")


def test_sequencer_order_sorts_events_of_one_key() -> None:
    sequencers = ["0055AED6DCD90281E7", "0055AED6DCD90281E5", "0055AED6DCD90281E6F0", "0055AED6DCD90281E6"]
    assert sorted(sequencers, key=sequencer_order) == [
        "0055AED6DCD90281E5", "0055AED6DCD90281E6", "0055AED6DCD90281E6F0", "0055AED6DCD90281E7",
    ]


@pytest.mark.parametrize("value", ["", "xyz", "12 34", "0x12", "-12", "A" * (SEQUENCER_DIGITS + 1), None, 12])
def test_sequencer_order_rejects_what_is_not_a_sequencer(value: Any) -> None:
    with pytest.raises(ValueError, match="not an S3 sequencer"):
        sequencer_order(value)
