"""IAM users with a chosen policy on the moto server, for AccessDenied paths (moto IAM mode)."""

from __future__ import annotations

import json
from typing import Any

import requests


def user_with_policy(s3: Any, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
    """Create IAM user `name` allowed/denied by `statements`; returns its boto3 credentials.

    Call before `s3.enforce_iam()`: afterwards every request is checked against IAM.
    """
    iam = s3.client("iam")
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(
        UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }


def stop_enforcing_iam(s3: Any) -> None:
    """Turn moto's IAM checks off again (e.g. to inspect the bucket with the fixture's keys)."""
    requests.post(f"{s3.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
