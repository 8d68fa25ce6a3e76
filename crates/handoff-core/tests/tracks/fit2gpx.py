#!/usr/bin/env python3
"""A FIT activity's recorded positions as GPX 1.1 (time, latitude, longitude, elevation), every
Nth point kept (the last always): how the FIT recordings in this folder were made GPX.

    pip install fitparse==1.2.0
    python3 fit2gpx.py ACTIVITY.fit NAME TYPE EVERY > OUT.gpx
"""
import sys
import fitparse

path, name, kind, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
points = []
for m in fitparse.FitFile(path).get_messages("record"):
    d = {f.name: f.value for f in m.fields}
    if d.get("position_lat") is None or d.get("position_long") is None or d.get("timestamp") is None:
        continue
    ele = d.get("enhanced_altitude", d.get("altitude"))
    points.append((d["timestamp"], d["position_lat"] * 180 / 2**31, d["position_long"] * 180 / 2**31, ele))
kept = points[::every]
if kept[-1] is not points[-1]:
    kept.append(points[-1])
out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<gpx version="1.1" creator="fit2gpx.py (handoff)" xmlns="http://www.topografix.com/GPX/1/1">',
    f"<trk><name>{name}</name><type>{kind}</type><trkseg>",
]
for t, lat, lon, ele in kept:
    e = f"<ele>{ele:.1f}</ele>" if ele is not None else ""
    # FIT times are UTC.
    out.append(f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}">{e}<time>{t.strftime("%Y-%m-%dT%H:%M:%SZ")}</time></trkpt>')
out.append("</trkseg></trk></gpx>")
print("\n".join(out))
