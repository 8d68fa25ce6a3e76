#!/usr/bin/env python3
"""Generate the relay-race example: legs/01.gpx … legs/36.gpx and plan.toml (stdlib only,
deterministic: the same script always writes the same bytes).

The course is a Hood To Coast-style relay, Mt. Hood (Timberline Lodge) to Seaside, Oregon,
about 190 miles in 36 legs. It is drawn from a hand-written list of corridor waypoints with
rough elevations: Timberline Road down to Government Camp, US-26 to Sandy, country roads to
Boring, the Springwater Corridor trail to the Willamette at OMSI, across the river and out on
US-30 past Linnton and Scappoose to St. Helens, west over the Coast Range back roads to Mist,
OR-202 through Birkenfeld, Jewell and Olney, and the Youngs River / Lewis and Clark roads to
the Seaside Turnaround. It is an approximation (a point every <= 150 m, straight between
waypoints), not the official course.

The corridor is cut into six blocks of six legs at the van exchanges (Sandy, OMSI, St. Helens,
Mist, Olney area, Seaside); inside a block the legs are cut in proportion to the real race's
leg distances, so leg lengths vary the way the real ones do. Each leg's duration is its
haversine length at a running pace of PACE_MIN_PER_KM.

    python3 examples/relay-race/generate.py
"""

import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LEGS_DIR = os.path.join(HERE, "legs")
R_EARTH = 6371008.8
PACE_MIN_PER_KM = 5.5          # 8:51 per mile
STEP_M = 150.0                 # max spacing of track points
ZONE = "America/Los_Angeles"

# Leg lengths of the real race in miles, used only as proportions inside each block of six.
LEG_MILES = [
    6.26, 6.05, 4.08, 6.64, 6.05, 7.10,
    5.25, 6.00, 5.38, 6.15, 3.92, 5.85,
    5.21, 7.91, 6.00, 4.00, 5.32, 4.15,
    5.89, 5.58, 5.06, 6.82, 4.16, 4.83,
    3.80, 5.65, 6.36, 3.83, 5.97, 5.32,
    3.96, 4.20, 7.72, 4.12, 7.07, 5.03,
]

# The corridor, (lat, lon, elevation m), in six blocks; each block ends at a van exchange,
# which is also the first point of the next block.
BLOCKS = [
    ("Timberline Lodge to Sandy", [
        (45.33050, -121.71150, 1820),   # Timberline Lodge, start line
        (45.32620, -121.70900, 1745),   # Timberline Road
        (45.32150, -121.70750, 1660),
        (45.31900, -121.70300, 1610),
        (45.31550, -121.70450, 1560),
        (45.31300, -121.71100, 1500),
        (45.30900, -121.71600, 1440),
        (45.30500, -121.72100, 1370),
        (45.30180, -121.72800, 1300),
        (45.29980, -121.73650, 1245),   # US-26 junction
        (45.30050, -121.74300, 1220),   # Government Camp Loop
        (45.30250, -121.75000, 1205),
        (45.30480, -121.75920, 1195),   # Government Camp
        (45.30300, -121.76800, 1150),   # US-26 west, down Laurel Hill
        (45.30000, -121.77900, 1060),
        (45.29750, -121.79000, 960),
        (45.29600, -121.80100, 880),
        (45.29750, -121.81200, 800),
        (45.30100, -121.82500, 730),
        (45.30450, -121.83800, 680),
        (45.30790, -121.85450, 640),
        (45.31100, -121.86500, 610),
        (45.31700, -121.87600, 570),
        (45.32350, -121.88600, 540),    # Rhododendron
        (45.32900, -121.90000, 505),
        (45.33500, -121.91900, 470),
        (45.34000, -121.93300, 450),    # Zigzag
        (45.34350, -121.95000, 430),
        (45.34450, -121.96500, 410),    # Welches
        (45.34800, -121.98000, 390),    # Wemme
        (45.35600, -121.99500, 370),
        (45.36400, -122.01000, 355),    # Brightwood
        (45.37100, -122.02500, 345),
        (45.37770, -122.03920, 340),
        (45.37600, -122.06000, 360),
        (45.37300, -122.08500, 375),
        (45.37000, -122.11000, 385),
        (45.36800, -122.13300, 380),
        (45.36650, -122.15500, 370),
        (45.37000, -122.18000, 360),
        (45.37600, -122.20500, 345),
        (45.38500, -122.22800, 330),
        (45.39300, -122.24800, 315),
        (45.40000, -122.26500, 305),
        (45.40570, -122.27690, 300),    # Sandy High School
    ]),
    ("Sandy to Portland (OMSI)", [
        (45.40570, -122.27690, 300),
        (45.41300, -122.27900, 290),    # north out of Sandy (Bluff Road)
        (45.42300, -122.28300, 270),
        (45.43400, -122.28600, 250),
        (45.44500, -122.28900, 230),
        (45.45370, -122.29050, 210),
        (45.45000, -122.30500, 200),
        (45.44500, -122.32500, 185),
        (45.44000, -122.34500, 170),
        (45.43500, -122.36200, 158),
        (45.43220, -122.37540, 150),    # Boring: Springwater Corridor trailhead
        (45.44200, -122.38800, 140),
        (45.45500, -122.40000, 125),
        (45.46800, -122.41200, 112),
        (45.48200, -122.42300, 100),
        (45.49540, -122.43170, 95),     # Gresham, Main City Park
        (45.49050, -122.46000, 85),     # Springwater Corridor west (Johnson Creek)
        (45.48600, -122.48500, 80),
        (45.48200, -122.51000, 75),     # Powell Butte
        (45.48000, -122.53000, 72),
        (45.47820, -122.54860, 70),
        (45.47200, -122.57000, 60),
        (45.46700, -122.59000, 50),
        (45.46400, -122.60500, 45),
        (45.46180, -122.61710, 40),
        (45.46300, -122.63500, 30),     # Sellwood
        (45.46600, -122.64800, 20),
        (45.47600, -122.65900, 12),     # Oaks Bottom, along the Willamette
        (45.48800, -122.66600, 10),
        (45.49900, -122.66700, 10),
        (45.50670, -122.66430, 12),     # OMSI
    ]),
    ("Portland to St. Helens", [
        (45.50670, -122.66430, 12),
        (45.51000, -122.66700, 10),     # Eastbank Esplanade
        (45.51250, -122.66650, 12),     # Hawthorne Bridge
        (45.51380, -122.67350, 12),
        (45.52000, -122.67250, 10),     # Waterfront Park / Naito Parkway
        (45.52600, -122.67150, 10),
        (45.53100, -122.67400, 10),
        (45.53700, -122.68300, 10),
        (45.54300, -122.69400, 10),     # NW Front Avenue
        (45.54800, -122.70500, 10),
        (45.55190, -122.71510, 10),
        (45.56000, -122.72800, 10),     # US-30, St. Helens Road
        (45.57000, -122.74200, 10),
        (45.58000, -122.75600, 10),
        (45.59000, -122.76900, 10),     # St. Johns Bridge
        (45.60000, -122.78100, 10),     # Linnton
        (45.61000, -122.79200, 10),
        (45.62000, -122.80400, 10),
        (45.62980, -122.81580, 10),     # Sauvie Island Bridge
        (45.64000, -122.82600, 10),
        (45.65500, -122.84000, 10),
        (45.67000, -122.85300, 10),
        (45.68300, -122.86300, 10),
        (45.69500, -122.87100, 12),
        (45.70800, -122.87600, 12),
        (45.72200, -122.87800, 15),
        (45.73600, -122.87700, 18),
        (45.74920, -122.87440, 20),     # Scappoose
        (45.76500, -122.87400, 20),
        (45.78200, -122.86800, 22),
        (45.80000, -122.85900, 25),
        (45.81920, -122.85080, 25),     # Warren
        (45.83000, -122.85600, 30),
        (45.84000, -122.86400, 32),
        (45.85060, -122.87230, 35),     # Columbia County Fairgrounds, St. Helens
    ]),
    ("St. Helens to Mist", [
        (45.85060, -122.87230, 35),
        (45.86500, -122.88500, 80),     # west into the hills
        (45.87800, -122.90000, 150),
        (45.89000, -122.91500, 210),
        (45.90160, -122.93400, 260),
        (45.90000, -122.95500, 300),
        (45.89500, -122.97500, 350),
        (45.89080, -122.99750, 380),
        (45.90800, -123.01000, 360),
        (45.92500, -123.02500, 330),
        (45.94560, -123.04360, 300),
        (45.95000, -123.07500, 290),
        (45.94800, -123.10500, 270),
        (45.95000, -123.13000, 265),
        (45.94930, -123.14940, 260),
        (45.96000, -123.17000, 240),
        (45.97430, -123.19870, 220),
        (45.98500, -123.23000, 210),
        (45.99500, -123.25500, 200),
        (46.00280, -123.27840, 190),    # Mist
    ]),
    ("Mist to Olney", [
        (46.00280, -123.27840, 190),
        (46.00000, -123.30500, 185),    # OR-202
        (45.99570, -123.33410, 175),    # Birkenfeld
        (45.98800, -123.36500, 190),
        (45.98000, -123.39500, 195),
        (45.97560, -123.41680, 200),
        (45.96000, -123.45000, 185),
        (45.94500, -123.48000, 175),
        (45.93390, -123.50610, 170),    # Jewell
        (45.94200, -123.53500, 220),
        (45.95000, -123.55500, 260),
        (45.95420, -123.57390, 280),
        (45.97500, -123.59000, 250),
        (46.00000, -123.60800, 200),
        (46.02070, -123.62510, 150),
        (46.04000, -123.65500, 110),
        (46.06580, -123.69270, 60),     # OR-202, Olney area
    ]),
    ("Olney to Seaside", [
        (46.06580, -123.69270, 60),
        (46.08000, -123.72000, 45),
        (46.09770, -123.74940, 30),     # Olney
        (46.08700, -123.76500, 28),
        (46.06980, -123.78790, 25),     # Youngs River Falls
        (46.09000, -123.80000, 15),     # Youngs River Road
        (46.11500, -123.82000, 10),
        (46.13500, -123.83500, 8),
        (46.14750, -123.84600, 10),
        (46.13500, -123.86000, 15),     # Lewis and Clark Road
        (46.12000, -123.86500, 25),
        (46.10450, -123.86610, 30),
        (46.08000, -123.86800, 30),
        (46.05000, -123.87000, 30),
        (46.02500, -123.86900, 25),
        (46.00760, -123.86730, 20),
        (46.00400, -123.88500, 15),
        (45.99900, -123.90500, 10),
        (45.99500, -123.91800, 8),      # Broadway, Seaside
        (45.99370, -123.92300, 6),
        (45.99350, -123.92970, 5),      # the Turnaround, Seaside: finish
    ]),
]


def haversine_m(a, b):
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * R_EARTH * math.asin(math.sqrt(h))


def lerp(a, b, t):
    return tuple(a[k] + (b[k] - a[k]) * t for k in range(len(a)))


def densify(points, max_step_m):
    out = [points[0]]
    for a, b in zip(points, points[1:]):
        d = haversine_m(a, b)
        n = max(1, int(math.ceil(d / max_step_m)))
        out += [lerp(a, b, i / n) for i in range(1, n + 1)]
    return out


def cut(points, targets_m):
    """Split a polyline at the given distances along it; the cut points are shared by the
    piece that ends there and the one that starts there."""
    pieces, cur, walked, ti = [], [points[0]], 0.0, 0
    for a, b in zip(points, points[1:]):
        seg = haversine_m(a, b)
        while ti < len(targets_m) and walked + seg >= targets_m[ti]:
            t = (targets_m[ti] - walked) / seg if seg > 0 else 0.0
            p = lerp(a, b, t)
            if haversine_m(cur[-1], p) > 0.01:
                cur.append(p)
            pieces.append(cur)
            cur = [p]
            ti += 1
        if haversine_m(cur[-1], b) > 0.01:
            cur.append(b)
        walked += seg
    pieces.append(cur)
    return pieces


def length_m(points):
    return sum(haversine_m(a, b) for a, b in zip(points, points[1:]))


def fmt_duration(minutes):
    h, m = divmod(int(round(minutes)), 60)
    return f"{h}h{m}m" if h else f"{m}m"


def write_gpx(path, name, points):
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="handoff examples/relay-race/generate.py" '
        'xmlns="http://www.topografix.com/GPX/1/1">',
        f"  <metadata><name>{name}</name></metadata>",
        "  <trk>",
        f"    <name>{name}</name>",
        "    <trkseg>",
    ]
    for lat, lon, ele in points:
        lines.append(f'      <trkpt lat="{lat:.6f}" lon="{lon:.6f}"><ele>{ele:.1f}</ele></trkpt>')
    lines += ["    </trkseg>", "  </trk>", "</gpx>", ""]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


def build_legs():
    legs = []
    for bi, (_, waypoints) in enumerate(BLOCKS):
        if bi:
            assert waypoints[0] == BLOCKS[bi - 1][1][-1], "blocks must join"
        # Round the waypoints as they will be written, so the shared exchanges are identical.
        line = [(round(a, 6), round(b, 6), c) for a, b, c in densify(waypoints, STEP_M)]
        total = length_m(line)
        miles = LEG_MILES[bi * 6:(bi + 1) * 6]
        acc, targets = 0.0, []
        for m in miles[:-1]:
            acc += m
            targets.append(total * acc / sum(miles))
        pieces = cut(line, targets)
        assert len(pieces) == 6
        for p in pieces:
            p = [(round(a, 6), round(b, 6), round(c, 1)) for a, b, c in p]
            legs.append(densify(p, STEP_M))
    # Joins are exact: each leg starts on the previous leg's last point.
    for a, b in zip(legs, legs[1:]):
        assert a[-1][:2] == b[0][:2], (a[-1], b[0])
    return legs


# Places (used for the schedule "when does it pass here"): van exchanges and the ends.
PLACES = [
    ("timberline-lodge", "Timberline Lodge, Mt. Hood (start)", 0),
    ("sandy", "Sandy High School (exchange 6)", 6),
    ("omsi", "OMSI, Portland (exchange 12)", 12),
    ("st-helens", "Columbia County Fairgrounds, St. Helens (exchange 18)", 18),
    ("mist", "Mist (exchange 24)", 24),
    ("olney", "OR-202 near Olney (exchange 30)", 30),
    ("seaside", "Seaside Turnaround (finish)", 36),
]

TEAMS = [
    ("team-001", "Team 1: Mountain Goats"),
    ("team-002", "Team 2: Hood Rats"),
    ("team-003", "Team 3: Sole Survivors"),
    ("team-004", "Team 4: Van Halen"),
    ("team-005", "Team 5: Chafing the Dream"),
    ("team-006", "Team 6: Coast Busters"),
]
FIRST_START_MIN = 6 * 60      # 06:00 local
STAGGER_MIN = 15
RACE_DATE = "2026-08-21"
UTC_OFFSET = "-07:00"          # PDT in August


def main():
    os.makedirs(LEGS_DIR, exist_ok=True)
    legs = build_legs()

    for i, pts in enumerate(legs, 1):
        write_gpx(os.path.join(LEGS_DIR, f"{i:02d}.gpx"), f"Leg {i}", pts)

    out = []
    out.append("# A Hood To Coast-style relay race: 36 running legs from Timberline Lodge on Mt. Hood")
    out.append("# to the beach at Seaside, Oregon; several teams on one course (race mode).")
    out.append("# Generated by generate.py (edit that, not this file); see README.md.")
    out.append("")
    out.append("[event]")
    out.append('id = "relay-race"')
    out.append('name = "Mountain to Coast relay: Mt. Hood → Seaside"')
    out.append("")
    for pid, name, k in PLACES:
        p = legs[0][0] if k == 0 else legs[k - 1][-1]
        out.append("[[places]]")
        out.append(f'id = "{pid}"')
        out.append(f'name = "{name}"')
        out.append(f"at = [{p[1]:.6f}, {p[0]:.6f}]")
        out.append(f'timezone = "{ZONE}"')
        out.append("")
    out.append("[[courses]]")
    out.append('id = "coast"')
    total_km = 0.0
    total_min = 0
    for i, pts in enumerate(legs, 1):
        km = length_m(pts) / 1000
        minutes = int(round(km * PACE_MIN_PER_KM))
        total_km += km
        total_min += minutes
        out.append("")
        out.append(f"# Leg {i}: {km:.2f} km ({km / 1.609344:.2f} mi), "
                   f"{pts[0][2]:.0f} m → {pts[-1][2]:.0f} m")
        out.append("[[courses.legs]]")
        out.append('mode = "run"')
        out.append(f'route = {{ file = "legs/{i:02d}.gpx" }}')
        out.append("exchange_radius_m = 30")
        out.append(f'duration = "{fmt_duration(minutes)}"')
    out.append("")
    out.append(f"# Course: {total_km:.1f} km ({total_km / 1.609344:.1f} mi), "
               f"{fmt_duration(total_min)} at {PACE_MIN_PER_KM} min/km.")
    for n, (tid, name) in enumerate(TEAMS):
        t = FIRST_START_MIN + n * STAGGER_MIN
        out.append("")
        out.append("[[relays]]")
        out.append(f'id = "{tid}"')
        out.append(f'name = "{name}"')
        out.append('course = "coast"')
        out.append(f'start = "{RACE_DATE}T{t // 60:02d}:{t % 60:02d}:00{UTC_OFFSET}[{ZONE}]"')
        runners = ", ".join(f'"Team {n + 1} Runner {r}"' for r in range(1, 13))
        out.append(f"carriers = [{runners}]")
    with open(os.path.join(HERE, "plan.toml"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(out) + "\n")

    for i, pts in enumerate(legs, 1):
        km = length_m(pts) / 1000
        print(f"leg {i:2d}: {len(pts):3d} pts {km:6.2f} km "
              f"{fmt_duration(round(km * PACE_MIN_PER_KM)):>6s} "
              f"ele {pts[0][2]:6.0f} -> {pts[-1][2]:6.0f}")
    print(f"total {total_km:.1f} km = {total_km / 1.609344:.1f} mi, {fmt_duration(total_min)}")


if __name__ == "__main__":
    main()
