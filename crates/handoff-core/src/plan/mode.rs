//! Transport modes and what is plausible for each: the prior speed used before any ping
//! arrives, the speed range `plan check` accepts, and the default exchange radius.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Stage,
    Walk,
    Run,
    Bike,
    Skateboard,
    Motorcycle,
    Car,
    Flight,
    Parachute,
    Rappel,
    Boat,
    Other,
}

pub const ALL_MODES: [Mode; 12] = [
    Mode::Stage,
    Mode::Walk,
    Mode::Run,
    Mode::Bike,
    Mode::Skateboard,
    Mode::Motorcycle,
    Mode::Car,
    Mode::Flight,
    Mode::Parachute,
    Mode::Rappel,
    Mode::Boat,
    Mode::Other,
];

impl Mode {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stage => "stage",
            Self::Walk => "walk",
            Self::Run => "run",
            Self::Bike => "bike",
            Self::Skateboard => "skateboard",
            Self::Motorcycle => "motorcycle",
            Self::Car => "car",
            Self::Flight => "flight",
            Self::Parachute => "parachute",
            Self::Rappel => "rappel",
            Self::Boat => "boat",
            Self::Other => "other",
        }
    }

    /// Average speeds (km/h) a planned leg may have in this mode; outside is a typo in a
    /// duration or a wrong route. Generous on purpose: slow walkers, fast cyclists downhill.
    #[must_use]
    pub const fn plausible_kmh(self) -> (f64, f64) {
        match self {
            Self::Stage => (0.0, 0.0),
            Self::Walk => (0.5, 9.0),
            Self::Run => (2.0, 26.0),
            Self::Bike => (3.0, 70.0),
            Self::Skateboard => (2.0, 40.0),
            Self::Motorcycle => (3.0, 250.0),
            Self::Car => (3.0, 250.0),
            Self::Flight => (100.0, 1200.0),
            Self::Parachute => (2.0, 300.0),
            Self::Rappel => (0.05, 30.0),
            Self::Boat => (1.0, 120.0),
            Self::Other => (0.0, 1200.0),
        }
    }

    /// The speed assumed before a carrier has reported any (m/s).
    #[must_use]
    pub const fn prior_speed_mps(self) -> f64 {
        match self {
            Self::Stage => 0.0,
            Self::Walk => 1.4,
            Self::Run => 3.0,
            Self::Bike => 5.5,
            Self::Skateboard => 3.5,
            Self::Motorcycle => 11.0,
            Self::Car => 12.0,
            Self::Flight => 230.0,
            Self::Parachute => 8.0,
            Self::Rappel => 1.0,
            Self::Boat => 6.0,
            Self::Other => 5.0,
        }
    }

    /// How far from the exchange point a handoff may happen (metres) unless the plan says.
    #[must_use]
    pub const fn default_exchange_radius_m(self) -> f64 {
        match self {
            Self::Stage | Self::Walk | Self::Run | Self::Rappel => 50.0,
            Self::Bike | Self::Skateboard => 75.0,
            Self::Motorcycle | Self::Car | Self::Boat | Self::Other => 150.0,
            Self::Parachute => 300.0,
            Self::Flight => 5_000.0,
        }
    }

    /// How a leg in this mode climbs and descends, for the legs on foot or by bike whose pace
    /// depends on the slope; `None` for the rest. A skateboard is pushed like walking (Tobler's
    /// function), not yet measured on a recorded ride.
    #[must_use]
    pub const fn locomotion(self) -> Option<Locomotion> {
        match self {
            Self::Walk | Self::Run | Self::Skateboard => Some(Locomotion::Foot),
            Self::Bike => Some(Locomotion::Bike),
            _ => None,
        }
    }

    /// The class of legs whose pace against the plan this leg's is learned with
    /// ([`PaceClass`]); `None` for a leg kept to its own plan whatever the others did: a stage,
    /// a flight (its schedule), a parachute jump or a rappel (its physics), anything else.
    #[must_use]
    pub const fn pace_class(self) -> Option<PaceClass> {
        match self {
            Self::Walk | Self::Run | Self::Skateboard | Self::Bike => Some(PaceClass::Muscle),
            Self::Motorcycle | Self::Car | Self::Boat => Some(PaceClass::Vehicle),
            Self::Stage | Self::Flight | Self::Parachute | Self::Rappel | Self::Other => None,
        }
    }
}

/// Which legs a relay's pace against its plan is learned from and applied to
/// ([`Mode::pace_class`]): a relay whose runners run 20 % slow will likely have slow cyclists
/// too (the same planner's optimism, the same weather), but a motorcycle escort stuck in
/// traffic says nothing about them, nor about how long a flight takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaceClass {
    /// On foot, on a board or by bike: the carriers' own effort.
    Muscle,
    /// On the road or the water in a vehicle: traffic, escorts, the sea.
    Vehicle,
}

impl PaceClass {
    /// Every class, each at the index of its discriminant.
    pub const ALL: [Self; 2] = [Self::Muscle, Self::Vehicle];
}

/// How the slope of the ground changes a muscle-powered pace ([`Mode::locomotion`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locomotion {
    /// Tobler's hiking function: slower uphill, fastest on a gentle descent, slower again on a
    /// steep one.
    Foot,
    /// A rider's constant power against rolling, air and gravity: much slower uphill, faster
    /// downhill up to a cap.
    Bike,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        ALL_MODES
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_classes_stand_in_all_at_their_own_index() {
        // Ratios kept per class are indexed by `class as usize` (`track::predict`).
        for (i, class) in PaceClass::ALL.into_iter().enumerate() {
            assert_eq!(class as usize, i, "{class:?}");
        }
    }

    #[test]
    fn every_mode_round_trips() {
        for m in ALL_MODES {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert!("hovercraft".parse::<Mode>().is_err());
    }
}
