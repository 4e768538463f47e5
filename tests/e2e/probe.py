"""The placeholder user-data that proves the harness before the agent's own user-data exists.

It does, through cloud-init on the guest, what the agent's user-data will do: install the agent
from the host's wheelhouse into /opt/decon, reach IMDSv2 at 169.254.169.254, write to S3 with
the credentials IMDS hands out (boto3's default chain, no keys in the guest), then power off.
"""

from __future__ import annotations

import textwrap

import yaml
from harness import S3_URL_IN_GUEST, WHEELHOUSE_IP, WHEELHOUSE_URL_IN_GUEST

DONE_FILE = "/run/decon-e2e-probe-done"
RELEASE_FILE = "/run/decon-e2e-release"
PROBE_KEY_PREFIX = "e2e/probe/"

# Under TCG a guest Python is slow to answer; botocore's IMDS default is 1 s and 1 attempt.
GUEST_AWS_ENV = {
    "AWS_ENDPOINT_URL": S3_URL_IN_GUEST,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_METADATA_SERVICE_TIMEOUT": "5",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "3",
}

PROBE_SCRIPT = textwrap.dedent(
    """\
    #!/opt/decon/bin/python
    # Reads IMDSv2 by hand, then lets boto3 find credentials and the endpoint on its own.
    import json
    import sys
    import time
    import urllib.request

    import boto3

    IMDS = "http://169.254.169.254/latest"
    started = time.monotonic()
    put = urllib.request.Request(
        IMDS + "/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
    )
    token = urllib.request.urlopen(put, timeout=10).read().decode()
    get = urllib.request.Request(
        IMDS + "/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
    )
    instance_id = urllib.request.urlopen(get, timeout=10).read().decode()
    credentials = boto3.Session().get_credentials()
    s3 = boto3.client("s3")
    body = {
        "instance_id": instance_id,
        "credential_method": credentials.method,
        "access_key": credentials.access_key,
        "endpoint": s3.meta.endpoint_url,
        "decon_help": open("/var/log/decon-e2e-help.txt").read(),
        "probe_seconds": round(time.monotonic() - started, 2),
    }
    s3.put_object(
        Bucket=sys.argv[1], Key="%s%s.json" % (sys.argv[2], instance_id),
        Body=json.dumps(body).encode(),
    )
    print("decon-e2e probe: wrote", instance_id)
    """
)


def probe_user_data(bucket: str) -> str:
    """#cloud-config: install the agent, probe IMDS and S3, wait for release, power off."""
    env = " ".join(f"{k}={v}" for k, v in GUEST_AWS_ENV.items())
    install = (
        "python3 -m venv /opt/decon && /opt/decon/bin/pip install --no-index --no-compile "
        f"--trusted-host {WHEELHOUSE_IP} --find-links {WHEELHOUSE_URL_IN_GUEST} decon-agent"
        " >/var/log/decon-e2e-pip.log 2>&1"
    )
    config = {
        "write_files": [
            {"path": "/usr/local/sbin/decon-e2e-probe", "permissions": "0755",
             "content": PROBE_SCRIPT},
        ],
        "runcmd": [
            ["sh", "-c", f"date +%s.%N >/run/decon-e2e-runcmd-start; {install}"],
            ["sh", "-c", "/opt/decon/bin/decon --help >/var/log/decon-e2e-help.txt 2>&1"],
            ["sh", "-c", f"{env} /usr/local/sbin/decon-e2e-probe {bucket} {PROBE_KEY_PREFIX}"
             " >/var/log/decon-e2e-probe.log 2>&1"],
            ["sh", "-c", f"touch {DONE_FILE}; timeout 900 sh -c "
             f"'until [ -e {RELEASE_FILE} ]; do sleep 1; done'"],
        ],
        "power_state": {"mode": "poweroff", "delay": "now", "condition": True,
                        "message": "decon-e2e probe done"},
    }  # fmt: skip
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)
