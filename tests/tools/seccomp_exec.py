#!/usr/bin/python3
"""Run a command under a seccomp profile; turn Docker's profile format into the OCI one.

    seccomp_exec.py PROFILE.json -- COMMAND [ARG]...   load the filter, then exec COMMAND
    seccomp_exec.py --oci PROFILE.json [ARCH]          print the OCI runtime-spec profile
    seccomp_exec.py --spo PROFILE.json NAME [ARCH]     print a Security Profiles Operator
                                                       SeccompProfile (YAML) named NAME

Used by tests/deploy_seccomp.rs and tests/deploy_kubernetes.rs to check the profiles of deploy/
without Docker, and to derive deploy/kubernetes' profiles from deploy/docker/seccomp-io_uring.json.
Running a command needs libseccomp's Python bindings (Debian: python3-seccomp).

PROFILE is either in Docker's format (archMap, includes/excludes) or in the OCI runtime-spec
format (architectures, no conditions), which is what containerd reads for a Kubernetes
`Localhost` profile. What is honoured, and how:

- `defaultAction` (with `defaultErrnoRet`), every `syscalls[]` entry's `names`, `action`
  (with `errnoRet`) and `args` (`index`, `op`, `value`, `valueTwo`; several conditions on
  different arguments must all hold; conditions that repeat an argument index become one rule
  each, which is how runc reads them).
- Docker's `archMap`: the native architecture's `subArchitectures` are filtered too (x86_64 also
  the x86 and x32 system call tables, as Docker does); OCI's `architectures` likewise.
- `includes` / `excludes`: evaluated for one architecture under its Go name (amd64, arm64, as
  Docker's `arches` use; the native one unless ARCH is given), for a container with no
  capabilities at all (every rule that needs a capability such as CAP_SYS_ADMIN is left out,
  every rule that excludes one is kept), and `minKernel` against the running kernel (for --oci
  and --spo: against 5.10, the oldest kernel uringseed's io_uring backend supports).
- Names this libseccomp does not know (system calls newer than it) are skipped, as runc skips
  them; they then get the default action. Rules whose action is the default action are skipped
  (libseccomp refuses them; they change nothing).
- no_new_privs is set (libseccomp's CTL_NNP), so no privileges are needed to load the filter;
  the filter then stays on across execve and applies to every thread COMMAND starts.

When running a command, a summary goes to stderr: how many rules were loaded and which names
were skipped.
"""

import errno
import json
import os
import platform
import sys

# uname machine -> (libseccomp architecture, Go name used by Docker's `arches`).
NATIVE = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
}
GO_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}
# Kernel assumed when writing a profile for other machines (--oci, --spo).
TARGET_KERNEL = (5, 10)


def running_kernel():
    parts = []
    for p in os.uname().release.split("-")[0].split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts + [0] * (2 - len(parts)))


def version(text):
    return tuple(int(x) for x in text.split(".")[:2])


def applies(rule, go_arch, caps, kernel):
    """Whether a syscalls[] entry applies on `go_arch` with capabilities `caps`."""
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and go_arch not in inc["arches"]:
        return False
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("minKernel") and kernel < version(inc["minKernel"]):
        return False
    if exc.get("arches") and go_arch in exc["arches"]:
        return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("minKernel") and kernel >= version(exc["minKernel"]):
        return False
    return True


def resolve(profile, go_arch, kernel, caps=()):
    """The syscalls[] entries that apply, as OCI entries (no includes, excludes or comment)."""
    out = []
    for rule in profile.get("syscalls") or []:
        if not applies(rule, go_arch, set(caps), kernel):
            continue
        r = {"names": list(rule["names"]), "action": rule["action"]}
        if rule.get("args"):
            r["args"] = [
                {
                    "index": a["index"],
                    "value": a.get("value", 0),
                    "valueTwo": a.get("valueTwo", 0),
                    "op": a["op"],
                }
                for a in rule["args"]
            ]
        if "errnoRet" in rule:
            r["errnoRet"] = rule["errnoRet"]
        out.append(r)
    return out


def architectures(profile, native):
    """The architectures filtered besides the native one's table (OCI: all listed)."""
    if "architectures" in profile:
        return list(profile["architectures"] or [])
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            return [native] + list(entry.get("subArchitectures") or [])
    return [native]


def oci(profile, go_arch):
    """`profile` for `go_arch` and no capabilities, in the OCI runtime-spec format."""
    out = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["architectures"] = architectures(profile, GO_ARCH[go_arch])
    out["syscalls"] = resolve(profile, go_arch, TARGET_KERNEL)
    return out


def spo(profile, name, go_arch):
    """A SeccompProfile of the Security Profiles Operator (API v1) with the same rules."""
    o = oci(profile, go_arch)
    syscalls = []
    for r in o["syscalls"]:
        s = {"action": r["action"], "names": r["names"]}
        if "args" in r:
            s["args"] = [
                {k: v for k, v in a.items() if not (k == "valueTwo" and v == 0)}
                for a in r["args"]
            ]
        if "errnoRet" in r:
            s["errnoRet"] = r["errnoRet"]
        syscalls.append(s)
    return {
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SeccompProfile",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "uringseed"},
        },
        # The CRD has no defaultErrnoRet: SCMP_ACT_ERRNO without one is EPERM, as in the
        # Docker profile (defaultErrnoRet 1).
        "spec": {
            "defaultAction": o["defaultAction"],
            "architectures": o["architectures"],
            "syscalls": syscalls,
        },
    }


def action(seccomp, name, errno_ret, default_errno):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        if errno_ret is None:
            errno_ret = default_errno
        return seccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return seccomp.KILL
    if name == "SCMP_ACT_KILL_PROCESS":
        return seccomp.KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return seccomp.TRAP
    if name == "SCMP_ACT_LOG":
        return seccomp.LOG
    if name == "SCMP_ACT_TRACE":
        return seccomp.TRACE(errno_ret or 0)
    raise SystemExit(f"seccomp_exec: action {name} is not supported")


def build(profile, seccomp):
    machine = platform.machine()
    if machine not in NATIVE:
        raise SystemExit(f"seccomp_exec: architecture {machine} is not supported")
    native, go_arch = NATIVE[machine]
    default_errno = profile.get("defaultErrnoRet")
    default = action(seccomp, profile["defaultAction"], None, default_errno)
    f = seccomp.SyscallFilter(default)
    f.set_attr(seccomp.Attr.CTL_NNP, 1)
    for arch in architectures(profile, native):
        if arch != native:
            f.add_arch(getattr(seccomp.Arch, arch.removeprefix("SCMP_ARCH_")))
    ops = {
        "SCMP_CMP_NE": seccomp.NE,
        "SCMP_CMP_LT": seccomp.LT,
        "SCMP_CMP_LE": seccomp.LE,
        "SCMP_CMP_EQ": seccomp.EQ,
        "SCMP_CMP_GE": seccomp.GE,
        "SCMP_CMP_GT": seccomp.GT,
        "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
    }
    loaded, unknown, same_as_default = 0, set(), set()
    for rule in resolve(profile, go_arch, running_kernel()):
        act = action(seccomp, rule["action"], rule.get("errnoRet"), default_errno)
        conds = [
            seccomp.Arg(a["index"], ops[a["op"]], a["value"], a["valueTwo"])
            for a in rule.get("args", [])
        ]
        indexes = [a["index"] for a in rule.get("args", [])]
        # Conditions on one argument repeated: one rule per condition (any may match).
        groups = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        for name in rule["names"]:
            for group in groups:
                try:
                    f.add_rule(act, name, *group)
                    loaded += 1
                except RuntimeError as e:
                    # The bindings say "Library error (errno = -N)".
                    code = str(e).rsplit("errno = ", 1)[-1].rstrip(")")
                    if code == f"-{errno.EACCES}":
                        same_as_default.add(name)
                    elif code == f"-{errno.EINVAL}":
                        unknown.add(name)
                    else:
                        raise SystemExit(f"seccomp_exec: rule for {name}: {e}")
    return f, loaded, sorted(unknown), sorted(same_as_default)


def main(argv):
    if len(argv) >= 2 and argv[0] in ("--oci", "--spo"):
        with open(argv[1]) as fh:
            profile = json.load(fh)
        if argv[0] == "--oci":
            go_arch = argv[2] if len(argv) > 2 else "amd64"
            json.dump(oci(profile, go_arch), sys.stdout, indent="\t")
            print()
        else:
            import yaml  # python3-yaml

            go_arch = argv[3] if len(argv) > 3 else "amd64"
            print(
                "# Generated from deploy/docker/seccomp-io_uring.json by\n"
                f"#   tests/tools/seccomp_exec.py --spo PROFILE {argv[2]} {go_arch}\n"
                f"# (its rules for {go_arch} nodes and a container without capabilities); "
                "do not edit by hand."
            )
            sys.stdout.write(yaml.safe_dump(spo(profile, argv[2], go_arch), sort_keys=False))
        return 0
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    import seccomp  # python3-seccomp

    with open(argv[0]) as fh:
        profile = json.load(fh)
    f, loaded, unknown, same = build(profile, seccomp)
    print(
        f"seccomp_exec: {argv[0]}: default {profile['defaultAction']}, {loaded} rules loaded;"
        f" unknown to this libseccomp, left to the default: {' '.join(unknown) or '-'};"
        f" same as the default: {' '.join(same) or '-'}",
        file=sys.stderr,
        flush=True,
    )
    f.load()
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
