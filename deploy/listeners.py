"""Which target group the load balancer's listeners forward to, and whether they all agree.

    python3 deploy/listeners.py fraudscore-staging    prints blue or green (exit 0), or names
                                                      each rule that disagrees (exit 1)

CodeDeploy swaps blue and green at every deployment by rewriting the forward actions of the
production and test listeners, their default actions and their rules (deploy/README.md, "Only the
API behind the load balancer"). The deploy workflow runs this before and after each deployment to
check that every forward moved; before a stack update, its answer is the LiveTargetGroup parameter
of deploy/ecs.yaml. Run it between deployments: during one the two listeners differ on purpose.
Needs the AWS CLI (v2) and read access to the stack and the listener rules; standard library only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

USAGE = "usage: python3 deploy/listeners.py <stack name, e.g. fraudscore-staging>"


def forward_targets(actions: Iterable[Mapping[str, Any]]) -> frozenset[str] | None:
    """The target groups a rule's forward action sends traffic to (weight above 0), or None when
    the rule forwards nothing (a fixed response or a redirect)."""
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:  # CodeDeploy leaves the idle group in with weight 0
            return frozenset(g["TargetGroupArn"] for g in groups if int(g.get("Weight", 1)) > 0)
        return frozenset([action["TargetGroupArn"]])
    return None


def live_target_group(rules_by_listener: Mapping[str, Iterable[Mapping[str, Any]]]) -> str:
    """The one target group that every forward of every listener sends all its traffic to, given
    each listener's rules as ``aws elbv2 describe-rules`` returns them (default rule included).

    Raises ValueError listing the rules by what they forward to when they do not all agree."""
    by_targets: dict[frozenset[str], list[str]] = {}
    for listener, rules in rules_by_listener.items():
        for rule in rules:
            targets = forward_targets(rule.get("Actions", []))
            if targets is not None:
                where = f"{listener} listener, rule {rule.get('Priority', '?')}"
                by_targets.setdefault(targets, []).append(where)
    if not by_targets:
        raise ValueError("no rule of the listeners forwards to a target group")
    if len(by_targets) == 1:
        (targets,) = by_targets
        if len(targets) == 1:
            (live,) = targets
            return live
    lines = [f"  {' + '.join(sorted(t)) or 'nothing (every weight is 0)'}: {', '.join(where)}"
             for t, where in by_targets.items()]
    raise ValueError("the listeners do not all forward to one target group:\n" + "\n".join(lines))


def target_group_name(arn: str) -> str:
    """arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id> -> <name>."""
    return arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]


def _aws(*args: str) -> Any:
    # a fixed program and arguments, no shell: the stack name and ARNs are passed as single arguments
    done = subprocess.run(["aws", *args, "--output", "json"],  # noqa: S603, S607
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    stack = argv[1]
    try:
        (described,) = _aws("cloudformation", "describe-stacks", "--stack-name", stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        wanted = ("ProductionListenerArn", "TestListenerArn", "BlueTargetGroupName", "GreenTargetGroupName")
        missing = [name for name in wanted if name not in outputs]
        if missing:
            print(f"listeners.py: stack {stack} has no output {', '.join(missing)}: update it with "
                  "deploy/ecs.yaml first (deploy/README.md)", file=sys.stderr)
            return 1
        rules = {name: _aws("elbv2", "describe-rules", "--listener-arn", outputs[key])["Rules"]
                 for name, key in (("production", "ProductionListenerArn"), ("test", "TestListenerArn"))}
    except subprocess.CalledProcessError as exc:
        print(f"listeners.py: {' '.join(exc.cmd[:3])} failed: {exc.stderr.strip()}", file=sys.stderr)
        return 2
    try:
        live = live_target_group(rules)
    except ValueError as exc:
        print(f"listeners.py: {stack}: {exc}", file=sys.stderr)
        return 1
    colours = {outputs["BlueTargetGroupName"]: "blue", outputs["GreenTargetGroupName"]: "green"}
    if target_group_name(live) not in colours:
        print(f"listeners.py: {stack}: the listeners forward to {live}, neither of the stack's target "
              "groups", file=sys.stderr)
        return 1
    print(colours[target_group_name(live)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
