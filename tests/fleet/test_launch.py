"""decon launch against the moto server (EC2 + S3, real boto3 over HTTP)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import types

import pytest
import yaml

from conftest import make_config
from decon.config import ConfigError
from decon.fleet.launch import build_requests, launch_fleet
from decon.fleet.userdata import parse_user_data, render_user_data, written_files
from fakes.fleet import BUCKET, ec2_env, put_run, run_id, tagged_instance

JOB = "test-job"
RUNS = f"out/{JOB}/runs/"


def fake_renderer(cfg, host_index, host_count):
    """A small cloud-config, for tests about the launch requests rather than the user-data."""
    doc = {
        "write_files": [
            {
                "path": "/etc/decon/config.yaml",
                "content": yaml.safe_dump(
                    {"job": {"id": cfg.job.id, "host_index": host_index, "host_count": host_count}}
                ),
            }
        ]
    }
    return "#cloud-config\n" + yaml.safe_dump(doc)


def job_config(tmp_path, env, **launch):
    section = {
        "ami": env.ami,
        "instance_type": "m5.large",
        "subnet_id": env.subnet_id,
        "security_group_ids": [env.security_group_id],
        "iam_instance_profile": env.profile,
        "key_name": "ops",
        "max_price": 0.25,
        "metadata_hop_limit": 2,
        "root_volume_gb": 50,
        "tags": {"team": "data"},
    }
    section.update(launch)
    return make_config(tmp_path, launch=section, output={"uri": f"s3://{BUCKET}/out"})


def recorder(ec2):
    """Every RunInstances request exactly as boto3 sends it (moto drops e.g. MaxPrice)."""
    sent = []
    ec2.meta.events.register(
        "provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params))
    )
    return sent


def instances(ec2, states=("pending", "running")):
    pages = ec2.describe_instances(
        Filters=[
            {"Name": "tag:decon:job", "Values": [JOB]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def tags_of(inst):
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def test_launch_requests_carry_every_parameter(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env)
    ec2 = s3.client("ec2")
    sent = recorder(ec2)
    _, launched = launch_fleet(cfg, 3, ec2=ec2, renderer=fake_renderer)
    assert sorted(x.host_index for x in launched) == [0, 1, 2]
    found = instances(ec2)
    assert len(found) == 3
    by_index = {int(tags_of(i)["decon:host-index"]): i for i in found}
    assert sorted(by_index) == [0, 1, 2]
    for index, inst in by_index.items():
        iid = inst["InstanceId"]
        tags = tags_of(inst)
        assert tags["decon:job"] == JOB and tags["decon:host-count"] == "3"
        assert tags["Name"] == f"decon-{JOB}-{index}" and tags["team"] == "data"
        assert inst["InstanceType"] == "m5.large"
        assert inst["InstanceLifecycle"] == "spot"
        meta = inst["MetadataOptions"]
        assert (meta["HttpTokens"], meta["HttpEndpoint"], meta["HttpPutResponseHopLimit"]) == (
            "required",
            "enabled",
            2,
        )
        assert inst["IamInstanceProfile"]["Arn"].endswith("instance-profile/decon-node")
        assert inst["SubnetId"] == env.subnet_id
        assert [g["GroupId"] for g in inst["SecurityGroups"]] == [env.security_group_id]
        assert inst["KeyName"] == "ops"
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
        assert user_data == fake_renderer(cfg, index, 3)
        doc = yaml.safe_load(user_data)
        node = yaml.safe_load(doc["write_files"][0]["content"])
        assert node["job"] == {"id": JOB, "host_index": index, "host_count": 3}
        shutdown = ec2.describe_instance_attribute(
            InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior"
        )
        assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        volumes = ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
        )["Volumes"]
        assert [v["Size"] for v in volumes] == [50]
    # What moto does not keep, read from the requests as sent.
    assert len(sent) == 3
    for params in sent:
        spot = params["InstanceMarketOptions"]
        assert spot == {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
                "MaxPrice": "0.25",
            },
        }
        assert params["MinCount"] == params["MaxCount"] == 1
        kinds = [t["ResourceType"] for t in params["TagSpecifications"]]
        assert kinds == ["instance", "volume"]


def test_real_renderer_user_data_round_trips_through_ec2(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env)
    ec2 = s3.client("ec2")
    _, launched = launch_fleet(cfg, 3, ec2=ec2)  # the default: render_user_data
    by_index = {int(tags_of(i)["decon:host-index"]): i["InstanceId"] for i in instances(ec2)}
    assert sorted(by_index) == [0, 1, 2] == sorted(x.host_index for x in launched)
    seen = set()
    for index, iid in by_index.items():
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
        assert user_data == render_user_data(cfg, host_index=index, host_count=3)
        node = yaml.safe_load(written_files(parse_user_data(user_data))["/etc/decon/config.yaml"])
        assert (node["job"]["id"], node["job"]["host_index"], node["job"]["host_count"]) == (
            JOB,
            index,
            3,
        )
        seen.add(user_data)
    assert len(seen) == 3  # each host got its own config


def test_on_demand_and_instance_type_override(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env, max_price=None, root_volume_gb=None)
    ec2 = s3.client("ec2")
    sent = recorder(ec2)
    launch_fleet(
        cfg,
        1,
        ec2=ec2,
        renderer=fake_renderer,
        spot=False,
        instance_types=["c5.xlarge", "c5a.xlarge"],
    )
    (inst,) = instances(ec2)
    assert inst.get("InstanceLifecycle") != "spot" and inst["InstanceType"] == "c5.xlarge"
    assert "InstanceMarketOptions" not in sent[0] and "BlockDeviceMappings" not in sent[0]
    assert sent[0]["MetadataOptions"]["HttpPutResponseHopLimit"] == 2


def test_default_hop_limit_is_one(tmp_path):
    cfg = make_config(tmp_path, launch={"ami": "ami-12345678"})
    (req,) = build_requests(cfg, 1, [0], renderer=fake_renderer)
    assert req.params["MetadataOptions"] == {
        "HttpTokens": "required",
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 1,
    }
    assert req.instance_types == ["m6i.2xlarge"]
    assert "SpotOptions" in req.params["InstanceMarketOptions"]


def test_dry_run_starts_nothing(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env)
    ec2 = s3.client("ec2")
    sent = recorder(ec2)
    requests, launched = launch_fleet(cfg, 4, ec2=ec2, renderer=fake_renderer, dry_run=True)
    assert [r.host_indices for r in requests] == [[0], [1], [2], [3]] and launched == []
    assert sent == [] and instances(ec2, states=("pending", "running", "terminated")) == []
    shown = requests[2].describe()
    assert shown["params"]["UserData"].startswith("<") and shown["host_count"] == 4


def test_only_missing_launches_exactly_the_missing_indices(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env)
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(hours=1)
    put_run(
        client,
        RUNS,
        run_id(old, "i-0aaa"),
        host_index=0,
        host_count=5,
        beat_at=old,
        sentinel="normal",
    )
    put_run(
        client,
        RUNS,
        run_id(old, "i-0bbb"),
        host_index=1,
        host_count=5,
        beat_at=old,
        sentinel="interrupted",
    )
    live = tagged_instance(s3, env, JOB, 2, 5)
    put_run(client, RUNS, run_id(now, live), host_index=2, host_count=5, beat_at=now)
    # host 3: nothing at all; host 4: stale heartbeat, no sentinel, its instance gone
    put_run(client, RUNS, run_id(old, "i-0ccc"), host_index=4, host_count=5, beat_at=old)
    ec2 = s3.client("ec2")
    _, launched = launch_fleet(cfg, 5, ec2=ec2, renderer=fake_renderer, only_missing=True)
    assert sorted(x.host_index for x in launched) == [1, 3, 4]
    indices = sorted(int(tags_of(i)["decon:host-index"]) for i in instances(ec2))
    assert indices == [1, 2, 3, 4]
    # Run again: every unfinished host now has a live instance: nothing to start.
    _, again = launch_fleet(cfg, 5, ec2=ec2, renderer=fake_renderer, only_missing=True)
    assert again == []


def test_only_missing_refuses_a_different_host_count(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env)
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    put_run(
        client,
        RUNS,
        run_id(old, "i-0aaa"),
        host_index=0,
        host_count=2,
        beat_at=old,
        sentinel="interrupted",
    )
    with pytest.raises(Exception, match="reshards"):
        launch_fleet(cfg, 3, ec2=s3.client("ec2"), renderer=fake_renderer, only_missing=True)


def test_launch_index_mode_is_one_call_tagged_after(s3, tmp_path):
    env = ec2_env(s3)
    cfg = job_config(tmp_path, env, use_launch_index=True)
    with pytest.raises(ConfigError, match="run.host_index_from_imds"):
        launch_fleet(cfg, 3, ec2=s3.client("ec2"), renderer=fake_renderer)
    cfg.run = types.SimpleNamespace(host_index_from_imds=True)  # the jobrun branch's section
    ec2 = s3.client("ec2")
    sent = recorder(ec2)
    _, launched = launch_fleet(cfg, 3, ec2=ec2, renderer=fake_renderer)
    assert len(sent) == 1 and sent[0]["MaxCount"] == 3
    found = instances(ec2)
    assert sorted(int(tags_of(i)["decon:host-index"]) for i in found) == [0, 1, 2]
    for inst in found:
        assert tags_of(inst)["decon:host-index"] == str(inst["AmiLaunchIndex"])


def decon(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "decon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


JOB_AREAS = {
    "input": {"uri": "s3://corpus/train/"},
    "output": {"uri": "s3://results/out"},
    "reference": {"uri": "s3://corpus/evals/"},
}


def write_job(tmp_path, data, areas=True):
    """A job file of `data`, with input, output and reference unless `areas` is false."""
    data = {**JOB_AREAS, **data} if areas else data
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_cli_missing_ami_is_one_line(s3, tmp_path):
    job = write_job(tmp_path, {"job": {"id": JOB}, "launch": {"instance_type": "m5.large"}})
    out = decon("launch", "--config", job, "--count", "2")
    assert out.returncode == 2 and "launch needs a complete job: missing launch.ami" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_refuses_a_job_without_its_areas_listing_every_missing_key(tmp_path):
    job = write_job(tmp_path, {"job": {"id": JOB}}, areas=False)
    out = decon("launch", "--config", job, "--count", "2", "--dry-run")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.strip().endswith(
        "launch needs a complete job: missing input.uri, output.uri, reference.uri, launch.ami"
    )


def test_cli_unknown_ami_is_one_line(s3, tmp_path):
    job = write_job(tmp_path, {"job": {"id": JOB}, "launch": {"ami": "ami-00000000deadbeef"}})
    out = decon("launch", "--config", job, "--count", "1")
    assert out.returncode == 2 and "ami-00000000deadbeef not found" in out.stderr
    assert "Traceback" not in out.stderr and instances(s3.client("ec2")) == []


def test_cli_bad_launch_key_is_one_line(tmp_path):
    job = write_job(tmp_path, {"job": {"id": JOB}, "launch": {"spot": "yes"}})
    out = decon("launch", "--config", job, "--count", "1", "--dry-run")
    assert out.returncode == 2 and "launch.spot: expected true or false" in out.stderr


def test_cli_dry_run_prints_each_host(s3, tmp_path, monkeypatch, capsys):
    from decon.fleet import launch

    env = ec2_env(s3)
    job = write_job(
        tmp_path,
        {
            "job": {"id": JOB},
            "launch": {"ami": env.ami, "spot": False},
            "run": {"distribution": "shard"},
        },
    )
    parser = __import__("argparse").ArgumentParser()
    launch.configure(parser)
    args = parser.parse_args(["--config", job, "--count", "2", "--dry-run", "--spot"])
    assert launch.run(args, renderer=fake_renderer) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "would launch host 0 of 2",
        "would launch host 1 of 2",
    ]
    params = json.loads(out[0].split(": ", 1)[1])
    assert params["InstanceMarketOptions"]["MarketType"] == "spot"  # --spot beats the file
    assert instances(s3.client("ec2")) == []


def queue_job(tmp_path, env, **launch):
    from fakes.jobrun_world import IN_BUCKET, IN_PREFIX, OUT_BUCKET

    return write_job(
        tmp_path,
        {
            "job": {"id": JOB},
            "launch": {"ami": env.ami, "subnet_id": env.subnet_id, **launch},
            "input": {"uri": f"s3://{IN_BUCKET}/{IN_PREFIX}"},
            "output": {"uri": f"s3://{OUT_BUCKET}/out"},
            "reference": {"uri": f"s3://{IN_BUCKET}/evals/"},
        },  # no run.distribution: queue is decon launch's default
    )


def launch_cli(*argv):
    from decon.fleet import launch

    parser = __import__("argparse").ArgumentParser()
    launch.configure(parser)
    return launch.run(parser.parse_args(list(argv)), fake_renderer)


def test_queue_mode_enqueues_once_starts_a_group_and_add_grows_it(s3, tmp_path, capsys):
    from decon.jobrun.workqueue import decode_file, queue_name
    from fakes.jobrun_world import put_shards

    env = ec2_env(s3)
    truth = put_shards(s3.client(), 5)
    job = queue_job(tmp_path, env)
    assert launch_cli("--config", job, "--count", "2") == 0
    assert "5 file(s) enqueued" in capsys.readouterr().out
    sqs = s3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name(JOB))["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 3
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"decon:job": JOB}
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert {decode_file(m["Body"]).rel for m in got["Messages"]} == set(truth)

    autoscaling = s3.client("autoscaling")
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert group["AutoScalingGroupName"] == f"decon-{JOB}"
    assert (group["MinSize"], group["DesiredCapacity"]) == (0, 2)
    assert launch_cli("--config", job, "--add", "2") == 0
    assert "desired capacity now 4" in capsys.readouterr().out
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert (group["DesiredCapacity"], group["MaxSize"]) == (4, 4)
    # A relaunch never queues a file twice, and resizes the same group.
    assert launch_cli("--config", job, "--count", "3") == 0
    shown = capsys.readouterr().out
    assert "holds 5 message(s); nothing enqueued" in shown and "desired capacity now 3" in shown
    assert len(autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]) == 1


def test_group_requests_have_the_exact_shape(s3, tmp_path):
    from decon.config import load_config
    from decon.fleet.launch import launch_group
    from decon.fleet.userdata import parse_user_data

    env = ec2_env(s3)
    cfg = load_config(queue_job(tmp_path, env, instance_types=["m5.xlarge"], max_price=0.3))
    ec2, autoscaling = s3.client("ec2"), s3.client("autoscaling")
    request = launch_group(
        cfg, 3, ec2=ec2, autoscaling=autoscaling, renderer=render_user_data_for_test
    )
    data = request.template["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["ImageId"] == env.ami and "InstanceMarketOptions" not in data
    user_data = parse_user_data(base64.b64decode(data["UserData"]).decode())
    node_config = yaml.safe_load(written_files(user_data)["/etc/decon/config.yaml"])
    assert node_config["run"]["autoscaling_group"] == f"decon-{JOB}"
    assert node_config["run"]["distribution"] == "queue"
    group = request.group
    assert group["CapacityRebalance"] is True
    assert group["MixedInstancesPolicy"]["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
        "SpotMaxPrice": "0.3",
    }
    overrides = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert overrides == [{"InstanceType": "m6i.2xlarge"}, {"InstanceType": "m5.xlarge"}]
    assert {"Key": "decon:job", "Value": JOB, "PropagateAtLaunch": True} in group["Tags"]
    assert group["VPCZoneIdentifier"] == env.subnet_id
    # What AWS holds is what was asked.
    (made,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert made["CapacityRebalance"] is True and made["DesiredCapacity"] == 3
    template = ec2.describe_launch_template_versions(LaunchTemplateName=f"decon-{JOB}")
    stored = template["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert stored["MetadataOptions"]["HttpTokens"] == "required"


def render_user_data_for_test(cfg, host_index, host_count):
    return render_user_data(cfg, host_index=host_index, host_count=host_count)


def test_add_needs_a_queue_job_with_a_group(s3, tmp_path):
    env = ec2_env(s3)
    shard = {"job": {"id": JOB}, "launch": {"ami": env.ami}, "run": {"distribution": "shard"}}
    out = decon("launch", "--config", write_job(tmp_path, shard), "--add", "1")
    assert out.returncode == 2 and "--add: not with run.distribution: shard" in out.stderr
    default = write_job(tmp_path, {"job": {"id": JOB}, "launch": {"ami": env.ami}})
    out = decon("launch", "--config", default, "--add", "1")
    assert out.returncode == 2 and "has no Auto Scaling group" in out.stderr


def test_cli_help_explains_spot_and_on_demand():
    out = decon("launch", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "--spot spot instances" in text and "--on-demand on-demand instances" in text
