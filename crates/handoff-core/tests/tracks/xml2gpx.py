#!/usr/bin/env python3
"""A TCX or GPX activity's recorded points as plain GPX 1.1 (time, latitude, longitude,
elevation, each copied as the source writes it), every Nth point kept (the last always): how
the TCX recordings in this folder were made GPX, and the GPX ones stripped of everything else.
A GPX source keeps its track segments; a TCX source's laps, which follow one another, become one
segment (as Garmin Connect's own GPX export does). Trackpoints without a position are skipped.

    python3 xml2gpx.py ACTIVITY.tcx|ACTIVITY.gpx NAME TYPE EVERY > OUT.gpx
"""
import sys
import xml.etree.ElementTree as ET

path, name, kind, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def local(tag):
    return tag.split("}")[-1]


def child_text(node, names):
    """The text of the first descendant of `node` named in `names` (namespaces ignored)."""
    for c in node.iter():
        if local(c.tag) in names and c.text:
            return c.text.strip()
    return None


root = ET.parse(path).getroot()
segments = []
if local(root.tag) == "gpx":
    for seg in (n for n in root.iter() if local(n.tag) == "trkseg"):
        points = []
        for p in (n for n in seg if local(n.tag) == "trkpt"):
            points.append((p.get("lat"), p.get("lon"), child_text(p, {"ele"}), child_text(p, {"time"})))
        segments.append(points)
else:
    points = []
    for tp in (n for n in root.iter() if local(n.tag) == "Trackpoint"):
        lat, lon = child_text(tp, {"LatitudeDegrees"}), child_text(tp, {"LongitudeDegrees"})
        if lat is None or lon is None:
            continue
        points.append((lat, lon, child_text(tp, {"AltitudeMeters"}), child_text(tp, {"Time"})))
    segments.append(points)
out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<gpx version="1.1" creator="xml2gpx.py (handoff)" xmlns="http://www.topografix.com/GPX/1/1">',
    f"<trk><name>{name}</name><type>{kind}</type>",
]
for points in segments:
    if not points:
        continue
    kept = points[::every]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    out.append("<trkseg>")
    for lat, lon, ele, t in kept:
        e = f"<ele>{ele}</ele>" if ele is not None else ""
        out.append(f'<trkpt lat="{lat}" lon="{lon}">{e}<time>{t}</time></trkpt>')
    out.append("</trkseg>")
out.append("</trk></gpx>")
print("\n".join(out))
