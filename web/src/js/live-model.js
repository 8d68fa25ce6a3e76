// The live view kept current from the stream. A `snapshot` (or `GET …/live`) replaces it;
// `position`, `eta`, `handoff` and `segment` messages patch it in place so the page moves at once, and
// the page re-reads `/live` after handoffs to stay exactly in step with the server.
//
// `/live` and the `eta` message send of each leg only what changes live (status, ETAs and their
// band, actual times, `shift_s`; a start that is the previous leg's end left out); the model completes
// every leg from the leg before it, the plan (carriers, mode, length, and the planned times
// moved by `shift_s`) and the relay's progress, so the pages read one whole leg as before.

const iso = (t) => new Date(t).toISOString();

/** Wraps a snapshot with lookups; `planModel` supplies what the plan says of each leg. */
export class LiveModel {
  constructor(planModel) {
    this.plan = planModel;
    this.planById = new Map(planModel.relays.map((r) => [r.id, r]));
    this.snapshot = null;
    this.byId = new Map();
  }

  replace(snapshot) {
    this.snapshot = snapshot;
    this.byId = new Map(snapshot.relays.map((r) => [r.id, r]));
    for (const r of snapshot.relays) {
      for (const leg of r.legs) this.complete(r, leg);
    }
  }

  /**
   * Fills in a live leg what the plan, the leg before it (a start left out is its end) and
   * the relay's progress say of it. Legs are completed in order.
   */
  complete(r, leg) {
    const before = r.legs[leg.index - 1];
    leg.eta_start ??= before?.eta_end;
    // The band comes as seconds either side of the ETA (`band_s`); the pages read instants.
    // (A `?legs=full` document has them as `eta_lo`/`eta_hi` already.) None once done.
    if (leg.band_s) [leg.eta_lo, leg.eta_hi] = leg.band_s.map((s) => iso(Date.parse(leg.eta_end) + s * 1000));
    if (leg.status === 'done') leg.eta_lo = leg.eta_hi = undefined;
    if (leg.status !== 'upcoming') leg.actual_start ??= before?.actual_end;
    const p = this.planById.get(r.id)?.legs[leg.index];
    if (!p) return;
    const shiftMs = (leg.shift_s ?? 0) * 1000;
    leg.carriers = p.carriers;
    leg.mode = p.mode;
    leg.length_m = p.lengthM;
    leg.planned_start = iso(Date.parse(p.startAt) + shiftMs);
    leg.planned_end = iso(Date.parse(p.endAt) + shiftMs);
    if (leg.status === 'done') leg.along_m = p.lengthM;
    else if (leg.status === 'current' && r.current_leg === leg.index) {
      leg.along_m = r.progress?.along_m ?? leg.along_m ?? 0;
      // When the holder was there: what "when does it pass here" interpolates from.
      leg.along_t = r.position?.t ?? leg.along_t;
    } else leg.along_m ??= 0;
  }

  relay(id) {
    return this.byId.get(id);
  }

  /** Applies one stream message; returns the relay id it changed (or null). */
  apply(kind, data) {
    if (kind === 'snapshot') {
      this.replace(data);
      return '*';
    }
    const r = this.byId.get(data.relay);
    if (!r) return null;
    if (kind === 'position') this.position(r, data);
    else if (kind === 'eta') this.eta(r, data);
    else if (kind === 'handoff' || kind === 'segment') this.handoff(r, data);
    else return null;
    return r.id;
  }

  position(r, p) {
    const leg = r.legs[p.leg];
    if (leg) Object.assign(leg, { along_m: p.along_m, along_t: p.t });
    // A late ping of an earlier leg backfills the track, not the marker.
    if (r.current_leg !== undefined && p.leg !== r.current_leg) return;
    r.position = { t: p.t, lon: p.lon, lat: p.lat, acc_m: p.acc_m, age_s: 0, stale: false };
    r.progress = { along_m: p.along_m, length_m: leg?.length_m ?? 0, fraction: p.fraction };
  }

  eta(r, e) {
    const previous = r.current_leg;
    Object.assign(r, {
      status: e.status,
      eta_finish: e.eta_finish,
      off_route: e.off_route,
      overdue: e.overdue,
      silent: e.silent,
    });
    for (const l of e.legs ?? []) {
      const leg = r.legs[l.index];
      if (!leg) continue;
      Object.assign(leg, {
        status: l.status,
        eta_start: l.eta_start,
        eta_end: l.eta_end,
        band_s: l.band_s,
        eta_lo: undefined,
        eta_hi: undefined,
        delta_s: l.delta_s,
        shift_s: l.shift_s,
        actual_start: l.actual_start,
        actual_end: l.actual_end,
        verified: l.verified,
        ended_by: l.ended_by,
      });
      this.complete(r, leg);
    }
    this.setCurrent(r, e.current_leg, previous);
  }

  /** A `handoff`, or a `segment` (a change of mode by the same carriers: no handoff). */
  handoff(r, h) {
    const from = r.legs[h.from_leg];
    if (from) {
      Object.assign(from, { status: 'done', actual_end: h.at, eta_end: h.at });
      // A segment change says nothing of custody: the stint's verification is kept as it was.
      if (h.type !== 'segment') from.verified = !!h.verified;
      if (h.ended_by) from.ended_by = h.ended_by;
    }
    if (from) this.complete(r, from);
    const to = h.to_leg === null || h.to_leg === undefined ? undefined : r.legs[h.to_leg];
    if (to) Object.assign(to, { status: 'current', actual_start: h.at, eta_start: h.at });
    else r.status = 'finished';
    this.setCurrent(r, h.to_leg ?? undefined, r.current_leg);
  }

  /** Holder, mode and progress follow the current leg. */
  setCurrent(r, current, previous) {
    r.current_leg = current;
    const leg = current === undefined ? null : r.legs[current];
    const planLeg = this.plan.relays.find((x) => x.id === r.id)?.legs[current];
    r.holders = leg ? (planLeg?.carriers ?? leg.carriers ?? []) : [];
    r.mode = leg ? (planLeg?.mode ?? leg.mode) : undefined;
    if (current !== previous) r.position = null;
    r.progress = leg
      ? { along_m: leg.along_m ?? 0, length_m: leg.length_m ?? 0, fraction: leg.length_m ? (leg.along_m ?? 0) / leg.length_m : 0 }
      : undefined;
    if (leg && r.status === 'planned') r.status = 'running';
  }
}
