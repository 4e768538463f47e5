def test_s3_fixture_is_a_real_server(s3):
    client = s3.client()
    client.create_bucket(Bucket="bkt")
    client.put_object(Bucket="bkt", Key="k", Body=b"x")
    assert client.get_object(Bucket="bkt", Key="k")["Body"].read() == b"x"
    assert s3.endpoint.startswith("http://127.0.0.1:")
