"""CreateImageDb, ListImageDbs and DeleteImageDb through both official SDKs."""

import pytest

from helpers import ApiCallError, expect_error, unique_name


def test_create_list_delete_db(client):
    """A created database is listed by name; after DeleteImageDb it is gone; each answer
    carries a RequestId."""
    name = unique_name()
    body = client.create_image_db(name)
    assert body["RequestId"]
    assert name in client.db_names()
    body = client.delete_image_db(name)
    assert body["RequestId"]
    assert name not in client.db_names()


def test_list_shows_every_db_once(client):
    """Several databases are all listed, each exactly once, as objects {Name}."""
    names = [unique_name("many") for _ in range(3)]
    for n in names:
        client.create_image_db(n)
    dbs = client.list_image_dbs()["Data"]["DbList"]
    listed = [d["Name"] for d in dbs]
    for n in names:
        assert listed.count(n) == 1
    for n in names:
        client.delete_image_db(n)


def test_create_existing_name_is_invalid_parameter(client):
    """Creating a name that exists → 400 InvalidParameter, and the database survives."""
    name = unique_name()
    client.create_image_db(name)
    expect_error(client.create_image_db, name, status=400, code="InvalidParameter")
    assert client.db_names().count(name) == 1
    client.delete_image_db(name)


def test_delete_unknown_db_is_invalid_parameter(client):
    """Deleting a database that does not exist (or no longer exists) → 400
    InvalidParameter."""
    name = unique_name("never")
    expect_error(client.delete_image_db, name, status=400, code="InvalidParameter")
    client.create_image_db(name)
    client.delete_image_db(name)
    expect_error(client.delete_image_db, name, status=400, code="InvalidParameter")


def test_delete_db_removes_its_images(client, image_server, images):
    """DeleteImageDb takes the images with it: a new database of the same name is empty."""
    name = unique_name()
    client.create_image_db(name)
    client.add(name, "e1", image_server.url(images.good[0]))
    client.delete_image_db(name)
    client.create_image_db(name)
    data = client.list_images(name)["Data"]
    assert data["TotalCount"] == 0 and not data.get("ImageList")
    assert client.matches(name, image_server.url(images.good[0])) == []
    client.delete_image_db(name)


@pytest.mark.parametrize("bad", [
    "a",                 # too short (length 2-64)
    "x" * 65,            # too long
    "Upper",             # upper case
    "has-dash",
    "has space",
    "dot.name",
    "图片库",            # non-ASCII
])
def test_bad_db_names_are_refused(client, bad):
    """Name must be lower-case letters, digits and `_`, 2-64 long → else 400
    InvalidParameter, and nothing is created."""
    expect_error(client.create_image_db, bad, status=400, code="InvalidParameter")
    assert bad not in client.db_names()


def test_missing_db_name_is_refused(client):
    """CreateImageDb without Name → 400 naming the parameter. The spec leaves the code open
    for a missing *business* parameter (InvalidParameter: "breaks its rule";
    MissingParameter is the gateway's code for common ones), so either is accepted."""
    with pytest.raises(ApiCallError) as info:
        client.create_image_db(None)
    e = info.value
    assert e.status == 400 and e.code in ("InvalidParameter", "MissingParameter"), e
    assert "Name" in e.message, e


@pytest.mark.parametrize("good", ["ab", "x" * 64, "a_1", "0db", "__"])
def test_boundary_db_names_are_accepted(client, good):
    """Names of length 2 and 64, digits and `_` are fine."""
    client.create_image_db(good)
    assert good in client.db_names()
    client.delete_image_db(good)
