"""Tenant isolation (ours): each key pair sees only its own databases and images."""

from __future__ import annotations

from helpers import expect_error, unique_name


def test_tenants_do_not_see_each_others_databases(client, client_b):
    """B's ListImageDbs does not show A's database; B can create one of the same name
    independently; deleting B's leaves A's in place."""
    name = unique_name("shared")
    client.create_image_db(name)
    assert name not in client_b.db_names()
    client_b.create_image_db(name)
    assert client.db_names().count(name) == 1
    assert client_b.db_names().count(name) == 1
    client_b.delete_image_db(name)
    assert name in client.db_names()
    assert name not in client_b.db_names()
    client.delete_image_db(name)


def test_same_db_name_holds_separate_images(client, client_b, image_server, images):
    """A and B each have a database `shared_*`: listing, searching and DeleteImage by B
    touch only B's images, never A's."""
    name = unique_name("shared")
    url_a = image_server.url(images.good[2])
    url_b = image_server.url(images.good[3])
    client.create_image_db(name)
    client_b.create_image_db(name)
    id_a = client.add(name, "ent", url_a, "A")
    id_b = client_b.add(name, "ent", url_b, "B")

    assert [r["DataId"] for r in client.list_all(name)] == [id_a]
    assert [r["DataId"] for r in client_b.list_all(name)] == [id_b]
    # B searching with A's image finds only B's record, and not as the same image.
    b_hits = client_b.matches(name, url_a, limit=10)
    assert [m["DataId"] for m in b_hits] == [id_b] and b_hits[0]["Score"] < 10.0
    # B's DeleteImage of "ent" deletes B's entity only.
    client_b.delete_image(name, "ent")
    assert client_b.list_images(name)["Data"]["TotalCount"] == 0
    top = client.matches(name, url_a, limit=1)[0]
    assert top["DataId"] == id_a and top["Score"] == 10.0
    # A token is bound to its tenant: A's token is refused on B's same-named database.
    client.add(name, "ent2", url_b, "A2")
    token = client.list_images(name, limit=1)["Data"]["Token"]
    assert token
    expect_error(client_b.list_images, name, limit=1, token=token,
                 status=400, code="InvalidParameter")
    client_b.delete_image_db(name)
    assert client.list_images(name)["Data"]["TotalCount"] == 2
    client.delete_image_db(name)


def test_other_tenants_db_is_unknown(client, client_b, image_server, images):
    """On a database only A has, B's AddImage, SearchImage, ListImages, DeleteImage and
    DeleteImageDb all fail as for an unknown database (400 InvalidParameter), and A's data
    is untouched."""
    name = unique_name("private")
    url = image_server.url(images.good[4])
    client.create_image_db(name)
    id_a = client.add(name, "ent", url)
    expect_error(client_b.add_image, name, "ent", url, status=400, code="InvalidParameter")
    expect_error(client_b.search_image, name, url, 5, status=400, code="InvalidParameter")
    expect_error(client_b.list_images, name, status=400, code="InvalidParameter")
    expect_error(client_b.delete_image, name, "ent", status=400, code="InvalidParameter")
    expect_error(client_b.delete_image_db, name, status=400, code="InvalidParameter")
    assert [r["DataId"] for r in client.list_all(name)] == [id_a]
    client.delete_image_db(name)
