#!/usr/bin/env python3
"""Generate the route files of the flag-handover example (stdlib only, deterministic).

The routes are hand-written waypoint lists that follow real streets as closely as they can be
drawn from public maps and station positions (metro stations sit under the boulevards they are
named after, which pins the Paris boulevards well); between waypoints the line is straight and
densified so that it draws and projects well. They are plausible approximations, not surveyed
tracks.

    python3 examples/flag-handover/generate.py          # writes routes/*, prints a summary

Coordinates in this file are written (lat, lon[, ele]) for readability; the files get [lon, lat].
"""

import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTES = os.path.join(HERE, "routes")
R_EARTH = 6371008.8  # mean Earth radius, metres (haversine)


def haversine_m(a, b):
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * R_EARTH * math.asin(math.sqrt(h))


def dest(p, bearing_deg, dist_m):
    """Point dist_m from p=(lat, lon) on the initial bearing (spherical, fine at city scale)."""
    lat1, lon1 = math.radians(p[0]), math.radians(p[1])
    b = math.radians(bearing_deg)
    d = dist_m / R_EARTH
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(b))
    lon2 = lon1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(lat1),
                             math.cos(d) - math.sin(lat1) * math.sin(lat2))
    return (math.degrees(lat2), math.degrees(lon2))


def arc(center, radius_m, from_deg, to_deg, step_deg=15.0):
    """Points on a circle around center, from bearing from_deg to to_deg (sign gives the way
    round: decreasing bearings = counter-clockwise, as traffic goes round a French roundabout)."""
    n = max(1, int(math.ceil(abs(to_deg - from_deg) / step_deg)))
    return [dest(center, from_deg + (to_deg - from_deg) * i / n, radius_m) for i in range(n + 1)]


def densify(points, max_step_m):
    """Insert evenly spaced points so no two neighbours are more than max_step_m apart.
    Elevation (third value), when present, is interpolated linearly."""
    out = [points[0]]
    for a, b in zip(points, points[1:]):
        d = haversine_m(a, b)
        if d < 0.5:  # drop duplicates
            continue
        n = max(1, int(math.ceil(d / max_step_m)))
        for i in range(1, n + 1):
            t = i / n
            p = tuple(a[k] + (b[k] - a[k]) * t for k in range(len(a)))
            out.append(p)
    return out


def length_m(points):
    return sum(haversine_m(a, b) for a, b in zip(points, points[1:]))


def r6(x):
    return round(x, 6)


def write_gpx(path, name, points):
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="handoff examples/flag-handover/generate.py" '
        'xmlns="http://www.topografix.com/GPX/1/1">',
        f"  <metadata><name>{name}</name></metadata>",
        "  <trk>",
        f"    <name>{name}</name>",
        "    <trkseg>",
    ]
    for p in points:
        if len(p) > 2:
            lines.append(f'      <trkpt lat="{r6(p[0]):.6f}" lon="{r6(p[1]):.6f}">'
                         f"<ele>{p[2]:.1f}</ele></trkpt>")
        else:
            lines.append(f'      <trkpt lat="{r6(p[0]):.6f}" lon="{r6(p[1]):.6f}"></trkpt>')
    lines += ["    </trkseg>", "  </trk>", "</gpx>", ""]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


def lonlat(p):
    c = [r6(p[1]), r6(p[0])]
    if len(p) > 2:
        c.append(round(p[2], 1))
    return c


def write_json(path, obj):
    # One coordinate pair per line: readable diffs, still small.
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text + "\n")


# --------------------------------------------------------------------------------------------
# Places (lat, lon). The plan's [[places]] use exactly these values, so the legs join exactly.
# --------------------------------------------------------------------------------------------
STADE_DE_FRANCE = (48.92446, 2.36015)      # centre of the pitch
LE_BOURGET = (48.94900, 2.43400)            # apron by the historic terminal, Paris-Le Bourget
HOLLYWOOD_DROP = (34.14500, -118.29300)     # above Griffith Park, where he jumps
HOLLYWOOD_SIGN = (34.13412, -118.32155)     # the letters, Mount Lee
HOLLYWOOD_HIGHLAND = (34.10160, -118.33870)  # Hollywood Blvd & Highland Ave (skate -> bike)
SANTA_MONICA_14TH = (34.02460, -118.48330)  # Santa Monica Blvd & 14th St (bike -> run)
SANTA_MONICA_BEACH = (34.00860, -118.49680)  # the sand just south of Santa Monica Pier


# --------------------------------------------------------------------------------------------
# Leg 2: Tom Cruise's motorcycle, Stade de France -> central Paris -> Le Bourget.
# --------------------------------------------------------------------------------------------
def paris_motorcycle():
    arc_de_triomphe = (48.87378, 2.29504)
    trocadero = (48.86295, 2.28750)  # centre of Place du Trocadéro
    eiffel = (48.85826, 2.29450)
    axis = math.degrees(math.atan2(
        (eiffel[1] - trocadero[1]) * math.cos(math.radians(48.86)), eiffel[0] - trocadero[0]))

    pts = [
        STADE_DE_FRANCE,
        (48.92330, 2.35990),   # south end of the pitch, out through the south tunnel
        (48.92250, 2.35960),
        (48.92180, 2.35880),   # esplanade, heading west
        (48.92150, 2.35700),
        (48.92120, 2.35570),   # Avenue du Président Wilson (over the covered A1)
        (48.91500, 2.35620),
        (48.90800, 2.35720),
        (48.90300, 2.35850),
        (48.90050, 2.35920),   # Porte de la Chapelle
        (48.89850, 2.35940),   # over the Boulevard périphérique
        (48.89740, 2.35930),   # Rue de la Chapelle
        (48.89500, 2.35960),
        (48.89060, 2.35975),   # Marx Dormoy (Rue Marx Dormoy)
        (48.88750, 2.35990),
        (48.88460, 2.35985),   # La Chapelle: right onto Boulevard de la Chapelle
        (48.88450, 2.35700),
        (48.88430, 2.35300),
        (48.88370, 2.34970),   # Barbès-Rochechouart
        (48.88340, 2.34700),   # Boulevard de Rochechouart
        (48.88280, 2.34410),   # Anvers
        (48.88250, 2.34050),
        (48.88215, 2.33730),   # Pigalle
        (48.88300, 2.33500),   # Boulevard de Clichy
        (48.88370, 2.33240),   # Blanche (Moulin Rouge)
        (48.88380, 2.33000),
        (48.88355, 2.32730),   # Place de Clichy
        (48.88235, 2.32160),   # Boulevard des Batignolles, Rome
        (48.88180, 2.31850),
        (48.88125, 2.31580),   # Villiers
        (48.88100, 2.31250),   # Boulevard de Courcelles
        (48.88050, 2.30940),   # Monceau (Parc Monceau)
        (48.87990, 2.30640),
        (48.87925, 2.30340),   # Courcelles
        (48.87860, 2.30050),
        (48.87810, 2.29810),   # Place des Ternes: left into Avenue de Wagram
        (48.87680, 2.29740),
    ]
    # Round the Arc de Triomphe (counter-clockwise) from Avenue de Wagram to Avenue Kléber.
    pts.append(dest(arc_de_triomphe, 25, 125))
    pts += arc(arc_de_triomphe, 100, 25, -156, 12)
    pts.append(dest(arc_de_triomphe, 204, 125))
    # Avenue Kléber, straight down to Place du Trocadéro; round it to Avenue du Président Wilson.
    pts.append(dest(trocadero, 24, 95))
    pts += arc(trocadero, 75, 24, -250, 15)
    pts.append(dest(trocadero, 108, 200))            # a little way along Av. du Président Wilson
    pts.append(dest(dest(trocadero, axis, 300), axis - 90, 140))  # down the east side of the gardens
    pts.append(dest(dest(trocadero, axis, 420), axis - 90, 40))
    pts.append(dest(trocadero, axis, 430))           # Place de Varsovie
    pts.append(dest(trocadero, axis, 515))           # Pont d'Iéna
    pts.append(dest(trocadero, axis, 605))           # Quai Branly, at the foot of the Eiffel Tower
    pts += [
        (48.85990, 2.29510),   # Quai Branly, along the Seine
        (48.86130, 2.29760),   # Musée du quai Branly
        (48.86270, 2.30150),   # Pont de l'Alma (south end)
        (48.86280, 2.30570),   # Quai d'Orsay
        (48.86265, 2.31020),   # Pont des Invalides
        (48.86280, 2.31370),   # Pont Alexandre III
        (48.86230, 2.31700),
        (48.86255, 2.31880),   # Assemblée nationale: left over the Pont de la Concorde
        (48.86450, 2.31990),   # Place de la Concorde, south side
        (48.86500, 2.32150),   # past the obelisk
        (48.86580, 2.32280),   # Rue de Rivoli, along the Tuileries
        (48.86450, 2.32950),   # Tuileries
        (48.86222, 2.33641),   # Palais Royal - Musée du Louvre
        (48.86084, 2.34093),   # Louvre-Rivoli
        (48.85870, 2.34760),   # Châtelet: left into Boulevard de Sébastopol
        (48.86240, 2.34990),
        (48.86630, 2.35230),   # Réaumur-Sébastopol
        (48.86960, 2.35430),   # Strasbourg-Saint-Denis (Porte Saint-Denis)
        (48.87240, 2.35610),   # Boulevard de Strasbourg, Château d'Eau
        (48.87570, 2.35830),   # Gare de l'Est forecourt
        (48.87600, 2.36030),   # Rue du 8 Mai 1945
        (48.87850, 2.36190),   # Rue du Faubourg Saint-Martin
        (48.88120, 2.36420),   # Louis Blanc
        (48.88300, 2.36650),
        (48.88420, 2.36880),   # Stalingrad: Avenue de Flandre
        (48.88820, 2.37390),   # Riquet
        (48.89090, 2.37730),   # Crimée
        (48.89460, 2.38200),   # Corentin Cariou
        (48.89760, 2.38580),   # Porte de la Villette
        (48.89950, 2.38750),   # over the périphérique: N2, Avenue Jean Jaurès
        (48.90370, 2.39210),   # Aubervilliers-Pantin Quatre Chemins
        (48.90900, 2.39780),
        (48.91460, 2.40410),   # Fort d'Aubervilliers
        (48.92060, 2.41030),   # La Courneuve 8 Mai 1945
        (48.92700, 2.41680),   # N2 on through Le Bourget
        (48.93400, 2.42420),
        (48.94000, 2.43070),
        (48.94550, 2.43800),   # Musée de l'Air et de l'Espace: left onto the airfield
        (48.94700, 2.43650),
        LE_BOURGET,            # up the ramp of the waiting aircraft
    ]
    return densify(pts, 45.0)


# --------------------------------------------------------------------------------------------
# Leg 4: parachute, from the drop point over Griffith Park to the Hollywood Sign (inline points).
# --------------------------------------------------------------------------------------------
def parachute():
    pts = [
        HOLLYWOOD_DROP,
        (34.14430, -118.29800),
        (34.14300, -118.30350),
        (34.14120, -118.30850),
        (34.13930, -118.31300),
        (34.13800, -118.31700),
        (34.13720, -118.31980),   # turn in over Mount Lee
        (34.13600, -118.32120),
        (34.13490, -118.32160),
        HOLLYWOOD_SIGN,
    ]
    return pts


# --------------------------------------------------------------------------------------------
# Leg 5: Jagger Eaton's skateboard, Hollywood Sign -> Beachwood Canyon -> Hollywood Blvd.
# --------------------------------------------------------------------------------------------
def skateboard():
    pts = [
        HOLLYWOOD_SIGN,
        (34.13470, -118.32110),   # up to Mt Lee Drive, behind the letters
        (34.13480, -118.31950),   # Mt Lee Drive, winding down east
        (34.13400, -118.31800),
        (34.13260, -118.31710),
        (34.13080, -118.31640),
        (34.12920, -118.31600),
        (34.12780, -118.31650),   # the gate at the top of Deronda Drive
        (34.12680, -118.31760),   # Deronda Drive
        (34.12580, -118.31900),
        (34.12470, -118.31990),
        (34.12380, -118.32100),   # down to Beachwood Drive
        (34.12150, -118.32150),   # Beachwood Drive, Beachwood Canyon
        (34.11900, -118.32130),   # Beachwood Village
        (34.11600, -118.32140),   # the Hollywoodland gates
        (34.11300, -118.32180),
        (34.11000, -118.32170),
        (34.10750, -118.32150),
        (34.10480, -118.32140),   # Franklin Avenue: right
        (34.10490, -118.32400),
        (34.10500, -118.32670),   # Vine Street: left
        (34.10330, -118.32660),   # Capitol Records
        (34.10163, -118.32670),   # Hollywood & Vine: right along the Walk of Fame
        (34.10160, -118.32970),   # Cahuenga Blvd
        (34.10160, -118.33300),   # Wilcox Ave
        (34.10160, -118.33600),
        HOLLYWOOD_HIGHLAND,
    ]
    return densify(pts, 40.0)


# --------------------------------------------------------------------------------------------
# Leg 6: Kate Courtney's bike, Hollywood -> Santa Monica Blvd -> Santa Monica (with elevation).
# --------------------------------------------------------------------------------------------
def bike():
    pts = [
        HOLLYWOOD_HIGHLAND + (117.0,),
        (34.09810, -118.33850, 104.0),   # Highland Ave & Sunset Blvd
        (34.09450, -118.33840, 95.0),
        (34.09080, -118.33830, 88.0),    # Santa Monica Blvd: right
        (34.09080, -118.34430, 85.0),    # La Brea Ave
        (34.09060, -118.35020, 82.0),
        (34.09060, -118.36140, 79.0),    # Fairfax Ave
        (34.09050, -118.36670, 80.0),    # Crescent Heights (West Hollywood)
        (34.09030, -118.37660, 81.0),    # La Cienega Blvd
        (34.08900, -118.38100, 80.0),
        (34.08770, -118.38380, 78.0),    # San Vicente Blvd
        (34.08550, -118.38620, 77.0),    # Robertson Blvd
        (34.08130, -118.38950, 76.0),    # Doheny Dr: into Beverly Hills
        (34.07360, -118.40200, 80.0),    # Rodeo Dr
        (34.06660, -118.41350, 83.0),    # Wilshire Blvd (Beverly Hilton)
        (34.06200, -118.41750, 86.0),    # Century City
        (34.06050, -118.42050, 88.0),    # Avenue of the Stars
        (34.05750, -118.42620, 90.0),    # Beverly Glen Blvd
        (34.05150, -118.43550, 80.0),    # Westwood Blvd
        (34.04850, -118.44100, 72.0),    # Overland Ave
        (34.04500, -118.44620, 65.0),    # Sepulveda Blvd, under the 405
        (34.04150, -118.45350, 60.0),
        (34.03950, -118.46000, 57.0),    # Bundy Dr
        (34.03680, -118.46590, 54.0),    # Centinela Ave: into Santa Monica
        (34.03300, -118.47150, 50.0),    # 26th St
        (34.02900, -118.47750, 44.0),    # 20th St
        SANTA_MONICA_14TH + (40.0,),
    ]
    return densify(pts, 60.0)


# --------------------------------------------------------------------------------------------
# Leg 7: Michael Johnson's run, Santa Monica Blvd -> Ocean Ave -> the pier -> the beach.
# --------------------------------------------------------------------------------------------
def run():
    pts = [
        SANTA_MONICA_14TH,
        (34.02220, -118.48640),   # 11th St
        (34.01960, -118.49010),   # Lincoln Blvd
        (34.01720, -118.49350),   # 4th St (Third Street Promenade a block on)
        (34.01560, -118.49550),   # 3rd St
        (34.01390, -118.49780),   # Ocean Ave, Palisades Park: left
        (34.01270, -118.49640),   # Broadway
        (34.01150, -118.49510),   # Colorado Ave: right onto the pier bridge
        (34.01060, -118.49630),
        (34.01000, -118.49710),   # the pier deck
        (34.00930, -118.49640),   # down the steps to the sand
        SANTA_MONICA_BEACH,
    ]
    return densify(pts, 30.0)


def main():
    os.makedirs(ROUTES, exist_ok=True)
    summary = []

    moto = paris_motorcycle()
    write_gpx(os.path.join(ROUTES, "paris-motorcycle.gpx"),
              "Tom Cruise: Stade de France to Paris-Le Bourget", moto)
    summary.append(("paris-motorcycle.gpx", moto))

    chute = parachute()
    summary.append(("parachute (inline)", chute))

    skate = skateboard()
    write_json(os.path.join(ROUTES, "hollywood-skateboard.geojson"), {
        "type": "LineString",
        "coordinates": [lonlat(p) for p in skate],
    })
    summary.append(("hollywood-skateboard.geojson", skate))

    bk = bike()
    write_gpx(os.path.join(ROUTES, "la-bike.gpx"),
              "Kate Courtney: Hollywood to Santa Monica", bk)
    summary.append(("la-bike.gpx", bk))

    rn = run()
    write_json(os.path.join(ROUTES, "santa-monica-run.geojson"), {
        "type": "FeatureCollection",
        "features": [{
            "type": "Feature",
            "properties": {"name": "Michael Johnson: to the beach at Santa Monica Pier"},
            "geometry": {"type": "LineString", "coordinates": [lonlat(p) for p in rn]},
        }],
    })
    summary.append(("santa-monica-run.geojson", rn))

    for name, pts in summary:
        print(f"{name:32s} {len(pts):4d} points {length_m(pts) / 1000:8.3f} km")
    print("parachute points:", json.dumps([[r6(p[1]), r6(p[0])] for p in chute]))


if __name__ == "__main__":
    main()
