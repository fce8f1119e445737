"""The hand-written V1 signer used by the raw-request tests reproduces the spec's test
vector (spec 3.3), so a failure elsewhere is the server's and not the helper's."""

from helpers import v1_signature, v1_string_to_sign, v3_signature


def test_v1_signer_matches_spec_vector():
    """Spec 3.3: query + form body (CJK, space, `*`, `~`, empty SignatureType) → the
    documented signature."""
    query = ("Version=2020-03-20&Action=AddImage&Format=JSON&RegionId=cn-shanghai"
             "&Timestamp=2026-11-24T19:05:22Z&SignatureMethod=HMAC-SHA1&SignatureType="
             "&SignatureVersion=1.0&SignatureNonce=c4932dca17590a585c701a9a58c9ba5c"
             "&AccessKeyId=AKID")
    params = dict(kv.split("=", 1) for kv in query.split("&"))
    params.update({"DbName": "default", "EntityId": "e1", "ExtraData": "风景 a*b~c",
                   "ImageUrl": "http://127.0.0.1:9/a b.png"})
    assert v1_signature("POST", params, "SECRET") == "4fkPpLAFX7VqDme6NGuUTazYZXQ="
    sts = v1_string_to_sign("POST", params)
    assert sts.startswith("POST&%2F&AccessKeyId%3DAKID%26Action%3DAddImage")
    assert "%25E9%25A3%258E" in sts and "a%252Ab~c" in sts and "%2520" in sts


def test_v3_signer_matches_spec_vector():
    """Spec 3.3: the V3 SearchImage vector (all headers signed) → the documented
    signature."""
    headers = {
        "accept": "application/json",
        "content-type": "application/x-www-form-urlencoded",
        "host": "127.0.0.1:18080",
        "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
        "x-acs-action": "SearchImage",
        "x-acs-content-sha256": "fbfc6020bdca46aad8a3e62b81f8bf07277594e1d96e6849ee985d08b209608c",
        "x-acs-credentials-provider": "static_ak",
        "x-acs-date": "2026-11-24T18:53:28Z",
        "x-acs-signature-nonce": "bbc35548a008cb147fdc87875d5a9720",
        "x-acs-version": "2020-03-20",
    }
    body = b"DbName=default&ImageUrl=http%3A%2F%2F127.0.0.1%2Fx.jpg&Limit=5"
    signed, sig = v3_signature("POST", {}, headers, body, "SECRET")
    assert signed.split(";") == sorted(headers)
    assert sig == "61fedeca78e804a18bf2bbfa2c48ae84b156324df8e085fa76df7463ea8908e2"
