#!/usr/bin/env python3
"""Static checks of the compose stack: what `docker compose up` needs right, checked without
a Docker engine (CI has none). `docker-compose config -q` only checks the file's syntax; this
reads the resolved configuration of every profile (`config` output), the Dockerfile, the
workspace's Cargo.toml and the nginx configs, and fails on (for each profile, on the
services `docker compose --profile P up` would start):

  build-tag           two services that build share one image tag (Compose exports every
                      service's build in parallel; the second export of a tag can fail)
  rust-version        the Dockerfile's Rust base image is not the workspace's rust-version
  debian-release      builder and runtime images of different Debian releases (glibc)
  sale-settings       a process that opens the store (backend, worker, or any service with
                      FLASHSALE_STORE) without FLASHSALE_STORE, _STOCK and _STRATEGY, or two
                      of them in one profile with different settings (whoever starts first
                      creates the sale)
  nofile              a service without `ulimits: nofile` of at least MIN_NOFILE (engines
                      start containers with a soft limit of 1024)
  rabbitmq-health     a RabbitMQ healthcheck without check_running and
                      check_port_connectivity (`ping` passes before port 5672 is open and
                      before a node has joined its cluster)
  health-interval     a healthcheck interval under 30 s (a probe of mongo or RabbitMQ starts
                      a VM: CPU noise in benchmarks), or no start_period longer than the
                      interval (then the engine never probes at its fast start interval)
  healthy-dependency  `condition: service_healthy` on a service without a healthcheck
  nginx-nofile        an nginx config without worker_rlimit_nofile of at least twice its
                      worker_connections, or an nginx service whose hard nofile limit is
                      below the worker_rlimit_nofile of the config it mounts

Usage: scripts/check_compose.py [--root DIR] [--compose CMD]
  --root     the repository to check (default: this one); e.g. an export of an older commit
  --compose  the compose command (default: `docker compose` if present, else docker-compose)
Prints one line per failure. Exit 0: all pass; 1: a check failed; 2: could not check.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("check_compose: PyYAML is missing (Debian: apt-get install python3-yaml)")

# Enough for nginx (2 x worker_connections 4096) and a front tier at c = 500, far above the
# engines' default soft limit of 1024.
MIN_NOFILE = 8192
MIN_INTERVAL_S = 30.0
DOCKER_DEFAULT_INTERVAL_S = 30.0
# nginx's default when `events` sets none.
NGINX_DEFAULT_WORKER_CONNECTIONS = 512
STORE_OPENERS = ("backend", "worker")
SALE_SETTINGS = ("FLASHSALE_STORE", "FLASHSALE_STOCK", "FLASHSALE_STRATEGY")
RABBITMQ_CHECKS = ("check_running", "check_port_connectivity")
DEBIAN_RELEASES = ("bullseye", "bookworm", "trixie", "forky")


class Failure(Exception):
    """The checks could not run (a tool or a file is missing): exit 2."""


# --- Helpers --------------------------------------------------------------------------------


def seconds(duration):
    """A compose duration ("30s", "1m30s", "2m0s", "500ms", or a number of seconds)."""
    if duration is None:
        return None
    if isinstance(duration, (int, float)):
        return float(duration)
    text = str(duration).strip()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def environment(service):
    """A service's environment as a dict (compose prints a mapping or a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def command_words(service):
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def nofile_limits(service):
    """(soft, hard) of the service's nofile ulimit, or None."""
    limit = (service.get("ulimits") or {}).get("nofile")
    if limit is None:
        return None
    if isinstance(limit, (int, str)):
        return int(limit), int(limit)
    return int(limit.get("soft", 0)), int(limit.get("hard", 0))


def bind_mounts(service):
    """(source, target) of every bind mount (short `src:dst[:mode]` or long syntax)."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume.get("source", ""), volume.get("target", "")
        else:
            parts = str(volume).split(":")
            if len(parts) >= 2 and parts[0].startswith(("/", ".", "~")):
                yield parts[0], parts[1]


def active(services, profile):
    """The services one `up` with `--profile PROFILE` (None: no profile) would start."""
    return {
        name: service
        for name, service in services.items()
        if not service.get("profiles") or (profile is not None and profile in service["profiles"])
    }


# --- Checks of one profile's services ----------------------------------------------------------


def profile_name(profile):
    return f"profile {profile}" if profile else "no profile"


def check_build_tags(services, profile=None):
    tags = {}
    for name, service in sorted(services.items()):
        if "build" in service and service.get("image"):
            tags.setdefault(service["image"], []).append(name)
    for tag, names in tags.items():
        if len(names) > 1:
            yield (
                "build-tag",
                f"{', '.join(names)} all build image {tag!r} ({profile_name(profile)}): give "
                "each service its own tag (or none: compose names it after the service)",
            )


def opens_store(service):
    words = command_words(service)
    return (words and words[0] in STORE_OPENERS) or "FLASHSALE_STORE" in environment(service)


def check_sale_settings(services, profile=None):
    seen = {}
    for name, service in sorted(services.items()):
        if not opens_store(service):
            continue
        env = environment(service)
        missing = [key for key in SALE_SETTINGS if env.get(key) in (None, "")]
        if missing:
            yield (
                "sale-settings",
                f"{name} opens the store without {', '.join(missing)}: the first process to "
                "start creates the sale with its own settings",
            )
            continue
        seen.setdefault((env["FLASHSALE_STOCK"], env["FLASHSALE_STRATEGY"]), []).append(name)
    if len(seen) > 1:
        variants = "; ".join(
            f"{', '.join(names)}: stock {stock}, {strategy}"
            for (stock, strategy), names in sorted(seen.items())
        )
        yield (
            "sale-settings",
            f"processes that open the store disagree on the sale ({profile_name(profile)}): "
            f"{variants}",
        )


def check_nofile(services):
    for name, service in sorted(services.items()):
        limits = nofile_limits(service)
        if limits is None:
            yield ("nofile", f"{name} has no `ulimits: nofile` (engines default to a soft 1024)")
        elif min(limits) < MIN_NOFILE:
            yield ("nofile", f"{name}: nofile {limits[0]}:{limits[1]} is below {MIN_NOFILE}")
        elif limits[0] > limits[1]:
            yield ("nofile", f"{name}: nofile soft {limits[0]} above hard {limits[1]}")


def is_rabbitmq(service):
    return re.search(r"(^|/)rabbitmq(:|@|$)", str(service.get("image", ""))) is not None


def health_test(service):
    test = (service.get("healthcheck") or {}).get("test") or []
    return " ".join(test) if isinstance(test, list) else str(test)


def check_rabbitmq_health(services):
    for name, service in sorted(services.items()):
        if not is_rabbitmq(service):
            continue
        test = health_test(service)
        absent = [check for check in RABBITMQ_CHECKS if check not in test]
        if absent:
            yield (
                "rabbitmq-health",
                f"{name}: healthcheck {test!r} lacks {' and '.join(absent)} (`ping` passes "
                "before port 5672 is open and before a node has joined its cluster)",
            )


def health_enabled(service):
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return False
    test = check.get("test")
    return test not in (None, [], ["NONE"], "NONE")


def check_health_intervals(services):
    for name, service in sorted(services.items()):
        if not health_enabled(service):
            continue
        check = service["healthcheck"]
        interval = seconds(check.get("interval"))
        interval = DOCKER_DEFAULT_INTERVAL_S if interval is None else interval
        start_period = seconds(check.get("start_period")) or 0.0
        if interval < MIN_INTERVAL_S:
            yield (
                "health-interval",
                f"{name}: healthcheck every {interval:g} s, under {MIN_INTERVAL_S:g} s",
            )
        elif start_period <= interval:
            yield (
                "health-interval",
                f"{name}: start_period {start_period:g} s is not longer than the interval "
                f"({interval:g} s): its first probe would wait a whole interval",
            )


def check_healthy_dependencies(services, everything):
    for name, service in sorted(services.items()):
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            continue  # the short form only waits for a start
        for target, condition in sorted(depends.items()):
            wanted = (condition or {}).get("condition")
            if wanted == "service_healthy" and not health_enabled(everything.get(target, {})):
                yield (
                    "healthy-dependency",
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck",
                )


def check_nginx_services(services, root, rlimits):
    """nginx services' hard nofile limit against the worker_rlimit_nofile of their config."""
    for name, service in sorted(services.items()):
        for source, target in bind_mounts(service):
            if target != "/etc/nginx/nginx.conf":
                continue
            path = Path(source)
            path = path if path.is_absolute() else root / path
            rlimit = rlimits.get(path.resolve())
            limits = nofile_limits(service)
            if rlimit is not None and limits is not None and limits[1] < rlimit:
                yield (
                    "nginx-nofile",
                    f"{name}: hard nofile {limits[1]} is below worker_rlimit_nofile {rlimit} "
                    f"of {path.name} (a container cannot raise its hard limit)",
                )


def check_services(services, profile, root=Path("."), rlimits=None):
    """Every check over the services of one `config` output, as `up --profile` starts them."""
    running = active(services, profile)
    yield from check_build_tags(running, profile)
    yield from check_sale_settings(running, profile)
    yield from check_nofile(running)
    yield from check_rabbitmq_health(running)
    yield from check_health_intervals(running)
    yield from check_healthy_dependencies(running, services)
    yield from check_nginx_services(running, root, rlimits or {})


# --- Checks of the files ----------------------------------------------------------------------


def base_images(dockerfile_text):
    """The image of every FROM line (stage names and --platform flags dropped)."""
    images = []
    for line in dockerfile_text.splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            words = [w for w in words[1:] if not w.startswith("--")]
            if words:
                images.append(words[0])
    return images


def check_dockerfile(dockerfile_text, rust_version):
    wanted = tuple(rust_version.split("."))
    images = base_images(dockerfile_text)
    rust = [image for image in images if re.match(r"^(docker\.io/(library/)?)?rust:", image)]
    if not rust:
        yield ("rust-version", f"no `FROM rust:` stage; the workspace needs rustc {rust_version}")
    for image in rust:
        tag = image.split(":", 1)[1].split("@")[0]
        match = re.match(r"^(\d+(?:\.\d+){0,2})(?:-|$)", tag)
        version = tuple(match.group(1).split(".")) if match else ()
        # The tag must name the version as precisely as rust-version does (1.95 or 1.95.0).
        if version[: len(wanted)] != wanted or len(version) < len(wanted):
            yield (
                "rust-version",
                f"base image {image} is not rust-version {rust_version} (Cargo.toml): a cached "
                "older image would build with an older rustc",
            )
    releases = set()
    for image in images:
        name, _, tag = image.partition(":")
        if name.split("/")[-1] in ("rust", "debian", "buildpack-deps"):
            releases.update(r for r in DEBIAN_RELEASES if r in tag)
    if len(releases) > 1:
        yield (
            "debian-release",
            f"base images of different Debian releases ({', '.join(sorted(releases))}): the "
            "binaries need the glibc they were built against",
        )


def nginx_directive(text, name):
    """The value of a simple directive (`name value;`) outside comments, or None."""
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        match = re.match(rf"^\s*{name}\s+([^;]+);", code)
        if match:
            return match.group(1).strip()
    return None


def check_nginx_config(name, text):
    """Returns (failures, worker_rlimit_nofile or None) for one main nginx config."""
    failures = []
    connections = int(
        nginx_directive(text, "worker_connections") or NGINX_DEFAULT_WORKER_CONNECTIONS
    )
    rlimit = nginx_directive(text, "worker_rlimit_nofile")
    if rlimit is None:
        failures.append(
            (
                "nginx-nofile",
                f"{name} has no worker_rlimit_nofile: its workers keep the inherited open-files "
                f"limit (1024 in containers), below worker_connections {connections}",
            )
        )
        return failures, None
    if int(rlimit) < 2 * connections:
        failures.append(
            (
                "nginx-nofile",
                f"{name}: worker_rlimit_nofile {rlimit} is under 2 x worker_connections "
                f"{connections} (each proxied request holds two connections)",
            )
        )
    return failures, int(rlimit)


def main_nginx_configs(root):
    """nginx/*.conf files with an `events` block: the main configs (not included lists)."""
    for path in sorted((root / "nginx").glob("*.conf")):
        text = path.read_text()
        if re.search(r"^\s*events\s*\{", text, re.MULTILINE):
            yield path, text


# --- Running compose ------------------------------------------------------------------------


def compose_command(override):
    if override:
        return shlex.split(override)
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ) if _on_path("docker") else None
    if probe is not None and probe.returncode == 0:
        return ["docker", "compose"]
    if _on_path("docker-compose"):
        return ["docker-compose"]
    raise Failure("neither `docker compose` nor docker-compose is installed")


def _on_path(tool):
    return any(
        os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(":")
    )


def compose_output(compose, root, *args):
    command = [*compose, "-f", str(root / "docker-compose.yml"), "--project-directory", str(root)]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failure(f"`{' '.join(command + list(args))}` failed:\n{done.stderr.strip()}")
    return done.stdout


def profiles(compose, root):
    return [p for p in compose_output(compose, root, "config", "--profiles").split() if p]


def check_repository(root, compose):
    """Every check; yields (rule, message) per failure."""
    cargo = tomllib.loads((root / "Cargo.toml").read_text())
    rust_version = cargo.get("workspace", {}).get("package", {}).get("rust-version")
    if not rust_version:
        raise Failure("Cargo.toml has no [workspace.package] rust-version")
    yield from check_dockerfile((root / "Dockerfile").read_text(), rust_version)

    rlimits = {}
    for path, text in main_nginx_configs(root):
        failures, rlimit = check_nginx_config(f"nginx/{path.name}", text)
        yield from failures
        if rlimit is not None:
            rlimits[path.resolve()] = rlimit

    # One `config` with every profile enabled lists every service with its `profiles`; each
    # profile's `up` is then checked on the services it would start.
    names = profiles(compose, root)
    enable = [arg for name in names for arg in ("--profile", name)]
    config = yaml.safe_load(compose_output(compose, root, *enable, "config"))
    services = config.get("services") or {}
    reported = set()
    for profile in [None, *names]:
        for failure in check_services(services, profile, root, rlimits):
            if failure not in reported:  # a service in several profiles is reported once
                reported.add(failure)
                yield failure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--compose", help="compose command, e.g. 'docker-compose'")
    options = parser.parse_args(argv)
    root = options.root.resolve()
    try:
        failures = list(check_repository(root, compose_command(options.compose)))
    except (Failure, OSError, ValueError, yaml.YAMLError) as error:
        print(f"check_compose: cannot check {root}: {error}", file=sys.stderr)
        return 2
    for rule, message in failures:
        print(f"check_compose: {rule}: {message}")
    if failures:
        print(f"check_compose: {len(failures)} failed")
        return 1
    print(f"check_compose: {root.name}: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
