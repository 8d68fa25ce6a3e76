//! A leg's route: its vertices, cumulative geodesic distance per vertex, and (to come) the
//! spatial index used to project pings onto it.

use crate::geodesic::{Coord, distance_m};

/// A polyline with at least two vertices and its cumulative length in metres.
#[derive(Debug, Clone)]
pub struct Route {
    points: Vec<Coord>,
    cum_m: Vec<f64>,
}

/// Why a list of points cannot be a route.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("a route needs at least 2 points, this one has {0}")]
    TooFewPoints(usize),
    #[error("point {index} is not a valid coordinate (lon {lon}, lat {lat})")]
    BadCoord { index: usize, lon: f64, lat: f64 },
}

impl Route {
    /// Builds a route from its vertices.
    ///
    /// # Errors
    /// Fewer than two points, or a coordinate out of range or not finite.
    pub fn new(points: Vec<Coord>) -> Result<Self, RouteError> {
        if points.len() < 2 {
            return Err(RouteError::TooFewPoints(points.len()));
        }
        for (index, c) in points.iter().enumerate() {
            if !(c.lon.is_finite()
                && c.lat.is_finite()
                && (-180.0..=180.0).contains(&c.lon)
                && (-90.0..=90.0).contains(&c.lat))
            {
                return Err(RouteError::BadCoord {
                    index,
                    lon: c.lon,
                    lat: c.lat,
                });
            }
        }
        let mut cum_m = Vec::with_capacity(points.len());
        let mut acc = 0.0;
        cum_m.push(0.0);
        for w in points.windows(2) {
            acc += distance_m(w[0], w[1]);
            cum_m.push(acc);
        }
        Ok(Self { points, cum_m })
    }

    #[must_use]
    pub fn points(&self) -> &[Coord] {
        &self.points
    }

    /// Cumulative distance in metres at each vertex (first is 0).
    #[must_use]
    pub fn cumulative_m(&self) -> &[f64] {
        &self.cum_m
    }

    #[must_use]
    pub fn length_m(&self) -> f64 {
        self.cum_m.last().copied().unwrap_or(0.0)
    }

    #[must_use]
    pub fn start(&self) -> Coord {
        self.points[0]
    }

    #[must_use]
    pub fn end(&self) -> Coord {
        self.points[self.points.len() - 1]
    }
}
