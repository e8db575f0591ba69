#!/usr/bin/env python3
"""Tests of scripts/check_compose.py: each rule fails on what the compose file, Dockerfile
and nginx configs held before issue 18 and passes on their fixed form; the repository passes
as a whole; a broken copy of it fails through the command line.

Run: python3 scripts/test_check_compose.py   (CI does, after the check itself)
"""

import copy
import io
import shutil
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_compose as cc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

HEALTH = {"interval": "30s", "timeout": "10s", "retries": 3, "start_period": "2m"}
NOFILE = {"nofile": {"soft": 65536, "hard": 65536}}


def app(command, **extra):
    """One of our services, as `config` prints it after the fix."""
    service = {
        "build": {"context": "."},
        "command": [command],
        "ulimits": copy.deepcopy(NOFILE),
        "environment": {"RUST_LOG": "info"},
    }
    if command in cc.STORE_OPENERS:
        service["environment"].update(
            FLASHSALE_STORE="mongodb://mongo:27017/flashsale",
            FLASHSALE_STOCK="100",
            FLASHSALE_STRATEGY="count-insert",
        )
    service.update(extra)
    return service


def rules(failures):
    return [rule for rule, _ in failures]


def check(services, profile=None):
    return list(cc.check_services(services, profile))


class BuildTags(unittest.TestCase):
    def test_services_that_build_one_shared_tag_fail(self):
        services = {
            "backend": app("backend", image="flashsale:local"),
            "worker": app("worker", image="flashsale:local"),
        }
        self.assertEqual(rules(check(services)), ["build-tag"])

    def test_services_that_build_without_a_tag_pass(self):
        self.assertEqual(check({"backend": app("backend"), "worker": app("worker")}), [])

    def test_a_service_that_only_runs_the_built_tag_passes(self):
        runner = app("worker", image="flashsale:local")
        del runner["build"]
        services = {"backend": app("backend", image="flashsale:local"), "worker": runner}
        self.assertEqual(check(services), [])

    def test_services_of_a_profile_not_started_are_not_counted(self):
        services = {
            "backend": app("backend", image="flashsale:local"),
            "cluster-backend": app("backend", image="flashsale:local", profiles=["cluster"]),
        }
        self.assertEqual(check(services), [])
        self.assertEqual(rules(check(services, "cluster")), ["build-tag"])


class RustVersion(unittest.TestCase):
    RUNTIME = "FROM debian:bookworm-slim\n"

    def failures(self, first_line, rust_version="1.95"):
        return rules(cc.check_dockerfile(first_line + "\n" + self.RUNTIME, rust_version))

    def test_a_floating_rust_image_fails(self):
        self.assertEqual(self.failures("FROM rust:1-bookworm AS chef"), ["rust-version"])
        self.assertEqual(self.failures("FROM rust:latest"), ["rust-version"])

    def test_another_version_fails(self):
        self.assertEqual(self.failures("FROM rust:1.94-bookworm AS chef"), ["rust-version"])
        self.assertEqual(self.failures("FROM rust:1.9-bookworm"), ["rust-version"])

    def test_the_workspace_version_passes_with_or_without_a_patch_number(self):
        self.assertEqual(self.failures("FROM rust:1.95-bookworm AS chef"), [])
        self.assertEqual(self.failures("FROM --platform=$BUILDPLATFORM rust:1.95.0-bookworm"), [])

    def test_a_patch_level_rust_version_needs_that_patch_level(self):
        self.assertEqual(self.failures("FROM rust:1.95-bookworm", "1.95.1"), ["rust-version"])
        self.assertEqual(self.failures("FROM rust:1.95.1-bookworm", "1.95.1"), [])

    def test_a_dockerfile_without_a_rust_stage_fails(self):
        self.assertEqual(self.failures("FROM debian:bookworm"), ["rust-version"])

    def test_builder_and_runtime_of_different_debian_releases_fail(self):
        text = "FROM rust:1.95-trixie AS chef\nFROM debian:bookworm-slim\n"
        self.assertEqual(rules(cc.check_dockerfile(text, "1.95")), ["debian-release"])


class SaleSettings(unittest.TestCase):
    def test_a_worker_without_the_sale_settings_fails(self):
        worker = app("worker")
        del worker["environment"]["FLASHSALE_STOCK"], worker["environment"]["FLASHSALE_STRATEGY"]
        failures = check({"backend": app("backend"), "worker": worker})
        self.assertEqual(rules(failures), ["sale-settings"])
        self.assertIn("worker", failures[0][1])

    def test_any_service_given_a_store_must_carry_the_sale(self):
        odd = app("frontend")
        odd["environment"]["FLASHSALE_STORE"] = "postgres://db/flashsale"
        self.assertEqual(rules(check({"odd": odd})), ["sale-settings"])

    def test_processes_with_different_sales_fail(self):
        worker = app("worker")
        worker["environment"]["FLASHSALE_STOCK"] = "1000"
        self.assertEqual(rules(check({"backend": app("backend"), "worker": worker})),
                         ["sale-settings"])

    def test_services_that_never_open_the_store_need_no_sale(self):
        self.assertEqual(check({"frontend": app("frontend"), "loadtest": app("loadtest")}), [])


class OpenFiles(unittest.TestCase):
    def test_a_service_without_a_nofile_limit_fails(self):
        service = app("frontend")
        del service["ulimits"]
        self.assertEqual(rules(check({"frontend": service})), ["nofile"])

    def test_a_low_nofile_limit_fails(self):
        self.assertEqual(rules(check({"frontend": app("frontend", ulimits={"nofile": 1024})})),
                         ["nofile"])

    def test_a_soft_limit_above_the_hard_limit_fails(self):
        limits = {"nofile": {"soft": 65536, "hard": 16384}}
        self.assertEqual(rules(check({"frontend": app("frontend", ulimits=limits)})), ["nofile"])


class RabbitmqHealth(unittest.TestCase):
    def broker(self, test):
        return {
            "image": "rabbitmq:4-management",
            "ulimits": copy.deepcopy(NOFILE),
            "healthcheck": dict(HEALTH, test=test),
        }

    def test_a_ping_only_healthcheck_fails(self):
        broker = self.broker(["CMD", "rabbitmq-diagnostics", "-q", "ping"])
        self.assertEqual(rules(check({"rabbitmq": broker})), ["rabbitmq-health"])

    def test_check_running_without_the_port_check_fails(self):
        broker = self.broker(["CMD", "rabbitmq-diagnostics", "-q", "check_running"])
        self.assertEqual(rules(check({"rabbitmq": broker})), ["rabbitmq-health"])

    def test_running_and_port_connectivity_checks_pass(self):
        test = ["CMD-SHELL", "rabbitmq-diagnostics -q check_running && "
                "rabbitmq-diagnostics -q check_port_connectivity"]
        self.assertEqual(check({"rabbitmq": self.broker(test)}), [])

    def test_a_broker_without_a_healthcheck_fails(self):
        broker = self.broker([])
        del broker["healthcheck"]
        self.assertEqual(rules(check({"rabbit-1": broker})), ["rabbitmq-health"])


class HealthIntervals(unittest.TestCase):
    def service(self, **health):
        check_ = {"test": ["CMD", "true"], **health}
        return {"image": "x", "ulimits": copy.deepcopy(NOFILE), "healthcheck": check_}

    def test_a_five_second_interval_fails(self):
        service = self.service(interval="5s", start_period="10s")
        self.assertEqual(rules(check({"mongo": service})), ["health-interval"])

    def test_thirty_seconds_with_a_longer_start_period_passes(self):
        self.assertEqual(check({"mongo": self.service(interval="30s", start_period="2m0s")}), [])
        # No interval: Docker's default, 30 s.
        self.assertEqual(check({"mongo": self.service(start_period="1m")}), [])

    def test_thirty_seconds_without_a_start_period_fails(self):
        self.assertEqual(rules(check({"mongo": self.service(interval="30s")})),
                         ["health-interval"])
        self.assertEqual(rules(check({"mongo": self.service(interval="1m", start_period="1m")})),
                         ["health-interval"])

    def test_a_disabled_healthcheck_is_not_checked(self):
        service = self.service(interval="1s", disable=True)
        self.assertEqual(check({"mongo": service}), [])

    def test_durations_in_every_form_compose_prints(self):
        self.assertEqual(cc.seconds("1m30s"), 90.0)
        self.assertEqual(cc.seconds("2m0s"), 120.0)
        self.assertEqual(cc.seconds("500ms"), 0.5)
        self.assertEqual(cc.seconds(45), 45.0)
        with self.assertRaises(ValueError):
            cc.seconds("5 seconds")


class HealthyDependencies(unittest.TestCase):
    def test_waiting_for_health_of_a_service_without_a_healthcheck_fails(self):
        services = {
            "db": {"image": "x", "ulimits": copy.deepcopy(NOFILE)},
            "backend": app("backend", depends_on={"db": {"condition": "service_healthy"}}),
        }
        self.assertEqual(rules(check(services)), ["healthy-dependency"])

    def test_waiting_for_a_start_only_needs_no_healthcheck(self):
        services = {
            "db": {"image": "x", "ulimits": copy.deepcopy(NOFILE)},
            "backend": app("backend", depends_on={"db": {"condition": "service_started"}}),
        }
        self.assertEqual(check(services), [])


class Nginx(unittest.TestCase):
    def config(self, *directives):
        return "worker_processes auto;\n" + "".join(directives) + (
            "events {\n    worker_connections 4096;\n}\nhttp {}\n"
        )

    def test_a_config_without_worker_rlimit_nofile_fails(self):
        failures, rlimit = cc.check_nginx_config("nginx.conf", self.config())
        self.assertEqual((rules(failures), rlimit), (["nginx-nofile"], None))

    def test_a_commented_out_directive_does_not_count(self):
        text = self.config("# worker_rlimit_nofile 16384;\n")
        failures, _ = cc.check_nginx_config("nginx.conf", text)
        self.assertEqual(rules(failures), ["nginx-nofile"])

    def test_a_limit_under_twice_the_connections_fails(self):
        text = self.config("worker_rlimit_nofile 4096;\n")
        failures, _ = cc.check_nginx_config("nginx.conf", text)
        self.assertEqual(rules(failures), ["nginx-nofile"])

    def test_a_limit_of_twice_the_connections_or_more_passes(self):
        failures, rlimit = cc.check_nginx_config(
            "nginx.conf", self.config("worker_rlimit_nofile 16384;\n")
        )
        self.assertEqual((failures, rlimit), ([], 16384))

    def test_a_container_whose_hard_limit_is_below_the_configs_fails(self):
        conf = (ROOT / "nginx" / "nginx.conf").resolve()
        nginx = {
            "image": "nginx:stable",
            "volumes": [f"{conf}:/etc/nginx/nginx.conf:ro,z"],
            "ulimits": {"nofile": {"soft": 8192, "hard": 8192}},
        }
        failures = list(cc.check_services({"nginx": nginx}, None, ROOT, {conf: 16384}))
        self.assertEqual(rules(failures), ["nginx-nofile"])
        nginx["ulimits"] = copy.deepcopy(NOFILE)
        self.assertEqual(list(cc.check_services({"nginx": nginx}, None, ROOT, {conf: 16384})), [])


class Repository(unittest.TestCase):
    """The real files, through `config` of every profile."""

    @classmethod
    def setUpClass(cls):
        try:
            cls.compose = cc.compose_command(None)
        except cc.Failure as error:
            raise unittest.SkipTest(str(error))

    def run_main(self, root):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = cc.main(["--root", str(root)])
        return code, out.getvalue() + err.getvalue()

    def test_the_repository_passes_every_check(self):
        code, output = self.run_main(ROOT)
        self.assertEqual(code, 0, output)

    def test_every_profile_is_checked(self):
        self.assertTrue({"bench", "cluster", "observe", "postgres"}
                        <= set(cc.profiles(self.compose, ROOT)))

    def test_a_copy_with_a_fast_healthcheck_fails_on_the_command_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy_root = Path(tmp) / "repo"
            copy_root.mkdir()
            for name in ("docker-compose.yml", "Dockerfile", "Cargo.toml"):
                shutil.copy(ROOT / name, copy_root / name)
            shutil.copytree(ROOT / "nginx", copy_root / "nginx")
            compose = (copy_root / "docker-compose.yml").read_text()
            self.assertIn("  interval: 30s\n", compose)
            (copy_root / "docker-compose.yml").write_text(
                compose.replace("  interval: 30s\n", "  interval: 5s\n", 1)
            )
            code, output = self.run_main(copy_root)
        self.assertEqual(code, 1, output)
        self.assertIn("health-interval", output)

    def test_a_missing_compose_file_is_an_error_not_a_pass(self):
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(ROOT / "Cargo.toml", Path(tmp) / "Cargo.toml")
            shutil.copy(ROOT / "Dockerfile", Path(tmp) / "Dockerfile")
            code, output = self.run_main(Path(tmp))
        self.assertEqual(code, 2, output)


if __name__ == "__main__":
    unittest.main(verbosity=2)
