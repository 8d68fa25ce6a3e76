//! A torch relay for the engine's benchmarks (`benches/late.rs` here, and
//! `handoff-server/benches/startup.rs`, which includes this file): legs of 500 m walked one
//! after another along 10° N, the holder's phone and the next bearer's (waiting just past the
//! exchange) each reporting once a second.

use handoff_core::ping::Ping;
use jiff::Timestamp;

const LEG_M: f64 = 500.0;
/// Degrees of longitude per metre at 10° N.
const DEG_PER_M: f64 = 1.0 / 109_500.0;
/// 2027-01-15T08:00:00Z: the first leg's start.
pub const T0: i64 = 1_800_000_000;

/// `legs` legs of `leg_s` seconds each.
#[derive(Debug, Clone, Copy)]
pub struct Torch {
    pub legs: usize,
    pub leg_s: usize,
}

impl Torch {
    /// Pings a leg: two phones at 1 Hz.
    pub fn per_leg(self) -> usize {
        2 * self.leg_s
    }

    /// The plan, as TOML.
    pub fn plan(self) -> String {
        let mut s =
            String::from("[event]\nid = \"torch\"\nname = \"Torch\"\n[[relays]]\nid = \"torch\"\n");
        for i in 0..self.legs {
            #[allow(clippy::cast_precision_loss)]
            let (a, b) = (
                i as f64 * LEG_M * DEG_PER_M,
                (i + 1) as f64 * LEG_M * DEG_PER_M,
            );
            let start = if i == 0 {
                "start = \"2027-01-15T08:00:00Z\"\n"
            } else {
                ""
            };
            s.push_str(&format!(
                "[[relays.legs]]\ncarriers = [\"B{i}\"]\nmode = \"walk\"\n{start}\
                 route = {{ points = [[{a:.7}, 10.0], [{b:.7}, 10.0]] }}\nduration = \"{}s\"\n",
                self.leg_s
            ));
        }
        s
    }

    /// The `k`-th ping and the leg index of its carrier (`B{index}`): even ones the holder's,
    /// odd ones the next bearer's, waiting.
    pub fn ping(self, k: usize) -> (usize, Ping) {
        let leg = (k / self.per_leg()).min(self.legs - 1);
        let s = (k % self.per_leg()) / 2;
        let holder = k.is_multiple_of(2);
        #[allow(clippy::cast_precision_loss)]
        let along = if holder {
            leg as f64 * LEG_M + LEG_M * s as f64 / self.leg_s as f64
        } else {
            (leg + 1) as f64 * LEG_M + 20.0
        };
        let carrier = if holder {
            leg
        } else {
            (leg + 1).min(self.legs - 1)
        };
        #[allow(clippy::cast_possible_wrap)]
        let t = T0 + (k / self.per_leg() * self.leg_s + s) as i64;
        let p = Ping {
            t: Timestamp::from_second(t).expect("a time near 2027"),
            lon: along * DEG_PER_M,
            lat: 10.0
                + if k.is_multiple_of(4) {
                    0.00003
                } else {
                    -0.00003
                },
            acc_m: Some(6.0),
            speed_mps: None,
            heading_deg: None,
            alt_m: None,
            batt_pct: None,
        };
        (carrier, p)
    }
}
