#!/usr/bin/env python3
"""Adds a timeseries panel to deploy/grafana/uringseed.json below an existing row, shifting the
panels under it down. A maintenance tool for the dashboard's authors (not used at run time):

    python3 deploy/grafana/add_panel.py ROW_TITLE TITLE UNIT WIDTH 'EXPR|LEGEND' ['EXPR|LEGEND'...]
        [--description TEXT] [--stack]

The panel takes its look from the dashboard's first timeseries panel; EXPRs may use $job and
$instance like the others ($__rate_interval for rates)."""
import argparse
import copy
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "uringseed.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("row")
    ap.add_argument("title")
    ap.add_argument("unit")
    ap.add_argument("width", type=int)
    ap.add_argument("targets", nargs="+")
    ap.add_argument("--description", default="")
    ap.add_argument("--stack", action="store_true")
    a = ap.parse_args()
    with open(PATH) as f:
        d = json.load(f)
    panels = d["panels"]
    if any(p.get("title") == a.title for p in panels):
        raise SystemExit("a panel named %r exists already" % a.title)
    rows = [p for p in panels if p.get("type") == "row"]
    row = next(p for p in rows if p["title"] == a.row)
    below = [p for p in rows if p["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min((p["gridPos"]["y"] for p in below), default=None)
    inside = [p for p in panels if p.get("type") != "row"
              and p["gridPos"]["y"] > row["gridPos"]["y"]
              and (end is None or p["gridPos"]["y"] < end)]
    # The first free place: after the last panel of the row's bottom line, or a new line.
    bottom = max((p["gridPos"]["y"] for p in inside), default=row["gridPos"]["y"] + 1)
    line = [p for p in inside if p["gridPos"]["y"] == bottom]
    x = max((p["gridPos"]["x"] + p["gridPos"]["w"] for p in line), default=0)
    h = 8
    if x + a.width > 24:
        x, y = 0, bottom + h
        for p in panels:
            if end is not None and p["gridPos"]["y"] >= end:
                p["gridPos"]["y"] += h
    else:
        y = bottom
    tmpl = next(p for p in panels if p.get("type") == "timeseries")
    panel = copy.deepcopy(tmpl)
    panel["id"] = max(p["id"] for p in panels) + 1
    panel["title"] = a.title
    panel["description"] = a.description
    panel["gridPos"] = {"h": h, "w": a.width, "x": x, "y": y}
    panel["fieldConfig"]["defaults"]["unit"] = a.unit
    panel["fieldConfig"]["overrides"] = []
    panel["fieldConfig"]["defaults"]["custom"]["stacking"] = {
        "mode": "normal" if a.stack else "none", "group": "A"}
    ds = tmpl["targets"][0].get("datasource", tmpl.get("datasource"))
    panel["targets"] = []
    for i, t in enumerate(a.targets):
        expr, legend = t.split("|", 1)
        panel["targets"].append({"datasource": ds, "expr": expr, "legendFormat": legend,
                                 "refId": chr(ord("A") + i), "editorMode": "code",
                                 "range": True, "instant": False})
    panels.append(panel)
    panels.sort(key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    with open(PATH, "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
    print("added panel %d at x=%d y=%d" % (panel["id"], x, y))


if __name__ == "__main__":
    main()
