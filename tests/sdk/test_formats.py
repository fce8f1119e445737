"""JSON and XML bodies: the V1 client asking for Format=XML (raw `do_action`) gets
`<{Action}Response>` with `<RequestId>` and the data; errors in XML have root `<Error>`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from helpers import TENANT_A, ApiClient, _record_request_id, unique_name, v1_request

EXTRA = "风景 a*b~c <&> 'q' \"dq\""


@pytest.fixture(scope="module")
def xml_db(server, image_server, images):
    """A database with three images (entity x0..x2, x0 with CJK/markup ExtraData)."""
    c = ApiClient("core", server.port, TENANT_A)
    db = unique_name("xml")
    c.create_image_db(db)
    ids = [c.add(db, f"x{i}", image_server.url(images.good[30 + i]), EXTRA if i == 0 else f"e{i}")
           for i in range(3)]
    yield db, ids
    c.delete_image_db(db)


def _xml(core, action, **params) -> ET.Element:
    status, headers, body = core.core_raw(f"{action}Request", "XML", **params)
    assert status == 200, body
    assert headers.get("Content-Type", headers.get("content-type", "")).startswith("text/xml"), headers
    root = ET.fromstring(body)
    assert root.tag == f"{action}Response", body
    rid = root.findtext("RequestId")
    _record_request_id(rid)
    return root


def test_xml_list_image_dbs(core, xml_db):
    """ListImageDbs in XML: one <DbList><Name> per database."""
    db, _ = xml_db
    root = _xml(core, "ListImageDbs")
    names = [e.findtext("Name") for e in root.findall("./Data/DbList")]
    assert db in names


def test_xml_add_image(core, xml_db, image_server, images):
    """AddImage in XML: <Data><DataId> is the 16-digit id, listed afterwards."""
    db, _ = xml_db
    root = _xml(core, "AddImage", DbName=db, EntityId="x_added", ExtraData="",
                ImageUrl=image_server.url(images.good[33]))
    data_id = root.findtext("./Data/DataId")
    assert data_id and len(data_id) == 16 and data_id.isdigit()
    assert data_id in {r["DataId"] for r in core.list_all(db)}
    core.delete_image(db, "x_added")


def test_xml_search_image(core, xml_db, image_server, images):
    """SearchImage in XML: repeated <MatchList> with DataId, EntityId, ExtraData (CJK and
    markup characters escaped and round-tripped), ImageUrl, Score (10 for the same image)."""
    db, ids = xml_db
    url = image_server.url(images.good[30])
    root = _xml(core, "SearchImage", DbName=db, ImageUrl=url, Limit=2)
    matches = root.findall("./Data/MatchList")
    assert len(matches) == 2
    top = matches[0]
    assert top.findtext("DataId") == ids[0]
    assert top.findtext("EntityId") == "x0"
    assert top.findtext("ExtraData") == EXTRA
    assert top.findtext("ImageUrl") == url
    assert float(top.findtext("Score")) == 10.0
    assert float(matches[1].findtext("Score")) < 10.0


def test_xml_list_images(core, xml_db):
    """ListImages in XML: repeated <ImageList> records, <TotalCount>, <Token> for the next
    page, and the token works for the next (JSON) page."""
    db, ids = xml_db
    root = _xml(core, "ListImages", DbName=db, Limit=2, Order="asc")
    recs = root.findall("./Data/ImageList")
    assert [r.findtext("DataId") for r in recs] == ids[:2]
    assert [r.findtext("EntityId") for r in recs] == ["x0", "x1"]
    assert recs[0].findtext("ExtraData") == EXTRA
    assert int(recs[0].findtext("CreatedAt")) > 1_600_000_000_000
    assert int(root.findtext("./Data/TotalCount")) == 3
    token = root.findtext("./Data/Token")
    assert token
    page2 = core.list_images(db, limit=2, order="asc", token=token)["Data"]
    assert [r["DataId"] for r in page2["ImageList"]] == ids[2:]


def test_xml_error_body(core):
    """An error in XML: HTTP 400, root <Error> with RequestId, HostId, Code, Message."""
    status, headers, body = core.core_raw("DeleteImageDbRequest", "XML", Name=unique_name("none"))
    assert status == 400
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    assert root.findtext("Code") == "InvalidParameter"
    for k in ("RequestId", "HostId", "Message"):
        assert root.findtext(k), (k, body)
    _record_request_id(root.findtext("RequestId"))


def test_xml_gateway_error_body(server):
    """A gateway error (unknown key) honours Format=XML too: 404 <Error>."""
    r = v1_request("ListImageDbs", key_id="AKIDunknown", fmt="XML").send(server.port)
    assert r.status == 404
    root = r.xml()
    assert root.tag == "Error" and root.findtext("Code") == "InvalidAccessKeyId.NotFound"
    _record_request_id(root.findtext("RequestId"))


def test_json_is_the_default_format(server, xml_db):
    """Without Format the answer is JSON: {"RequestId", "Data"} with a JSON content type."""
    db, ids = xml_db
    r = v1_request("ListImages", {"DbName": db, "Limit": 1}, fmt=None).send(server.port)
    assert r.status == 200, r.body
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    _record_request_id(doc["RequestId"])
    assert doc["Data"]["TotalCount"] == 3


def test_get_with_everything_in_the_query(server, xml_db):
    """Transport: a signed GET with all parameters in the query string works."""
    db, ids = xml_db
    r = v1_request("ListImages", {"DbName": db, "Limit": 5, "Order": "asc"},
                   method="GET").send(server.port)
    assert r.status == 200, r.body
    doc = r.json()
    _record_request_id(doc["RequestId"])
    assert [x["DataId"] for x in doc["Data"]["ImageList"]] == ids
