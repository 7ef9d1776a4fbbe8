//! The positions a virtual device reports: a circle around its own centre, driven at a speed
//! that swells and ebbs smoothly, so that position, speed, course and odometer agree with one
//! another from record to record.

use std::f64::consts::PI;

/// Metres per degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = 111_320.0;
/// Period of the speed variation, seconds (the speed is `v0 · (1 + A sin(t / P))`).
const SPEED_PERIOD_S: f64 = 60.0;
const SPEED_SWING: f64 = 0.2;

pub use crate::protocol::sim::Fix;

/// A device's track.
#[derive(Debug, Clone)]
pub struct Track {
    seed: u64,
    center_lat: f64,
    center_lon: f64,
    radius_m: f64,
    /// Mean speed, m/s.
    v0: f64,
    phase: f64,
    /// Time origin, ms since the epoch.
    t0_ms: u64,
}

/// splitmix64: a cheap, well-mixed hash of the device index (no RNG state to share).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A number in `0..1` from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Track {
    /// Device `index`'s track, with its time origin at `t0_ms`. Centres are spread over about 100 km
    /// around Vilnius; radii 300 m to 2 km; mean speeds 20 to 90 km/h.
    pub fn new(index: u64, t0_ms: u64) -> Self {
        let seed = mix(index);
        Track {
            seed,
            center_lat: 54.6872 + (unit(mix(seed ^ 1)) - 0.5),
            center_lon: 25.2797 + (unit(mix(seed ^ 2)) - 0.5) * 1.6,
            radius_m: 300.0 + 1700.0 * unit(mix(seed ^ 3)),
            v0: (20.0 + 70.0 * unit(mix(seed ^ 4))) / 3.6,
            phase: 2.0 * PI * unit(mix(seed ^ 5)),
            t0_ms,
        }
    }

    /// Where the device is at `time_ms`.
    pub fn at(&self, time_ms: u64) -> Fix {
        // Signed: a record from before the origin is still on the track (never clamped, which
        // would repeat the origin's position).
        let t = (time_ms as f64 - self.t0_ms as f64) / 1000.0;
        // Distance is the integral of the speed, so speed and movement agree exactly.
        let dist =
            self.v0 * (t + SPEED_SWING * SPEED_PERIOD_S * (1.0 - (t / SPEED_PERIOD_S).cos()));
        let speed = self.v0 * (1.0 + SPEED_SWING * (t / SPEED_PERIOD_S).sin());
        // Counter-clockwise around the centre: east = R cos θ, north = R sin θ.
        let theta = self.phase + dist / self.radius_m;
        let (north, east) = (self.radius_m * theta.sin(), self.radius_m * theta.cos());
        let latitude = self.center_lat + north / M_PER_DEG;
        let longitude = self.center_lon + east / (M_PER_DEG * self.center_lat.to_radians().cos());
        // The velocity points along (-sin θ, cos θ) in (east, north): bearing -θ.
        let course = (-theta.to_degrees()).rem_euclid(360.0);
        let slow = (t / 30.0) as u64;
        let satellites = 7 + (mix(self.seed ^ slow) % 8) as u8;
        let wobble = mix(self.seed ^ (slow << 1));
        Fix {
            time_ms,
            latitude,
            longitude,
            altitude: 120.0 + 15.0 * theta.sin(),
            speed_kmh: speed * 3.6,
            course,
            satellites,
            hdop: 0.7 + 0.1 * (wobble % 8) as f64,
            odometer_m: dist.max(0.0) as u64,
            power_mv: 12_400 + (wobble % 1200) as u16,
            battery_mv: 4_000 + (wobble % 150) as u16,
            gsm_level: 3 + (wobble % 3) as u8,
        }
    }
}

/// `(year, month, day, hour, minute, second)` in UTC for seconds since the epoch.
pub use crate::protocol::civil::civil_from_secs as civil;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metres(a: &Fix, b: &Fix) -> f64 {
        let dn = (b.latitude - a.latitude) * M_PER_DEG;
        let de = (b.longitude - a.longitude) * M_PER_DEG * a.latitude.to_radians().cos();
        (dn * dn + de * de).sqrt()
    }

    #[test]
    fn movement_agrees_with_speed_course_and_odometer() {
        for index in [0, 1, 77, 99_999] {
            let t = Track::new(index, 1_700_000_000_000);
            let mut prev = t.at(1_700_000_000_000);
            for step in 1..200u64 {
                let f = t.at(1_700_000_000_000 + step * 1000);
                let d = metres(&prev, &f);
                let mean_speed = (prev.speed_kmh + f.speed_kmh) / 2.0 / 3.6;
                // One second of driving covers about the speed in metres (a chord of the circle).
                assert!(
                    (d - mean_speed).abs() < 0.05 * mean_speed + 0.5,
                    "{d} vs {mean_speed}"
                );
                let odo = f.odometer_m as f64 - prev.odometer_m as f64;
                assert!((odo - d).abs() <= 1.5, "odometer {odo} vs {d}");
                // The course points from the previous fix towards this one (within a few
                // degrees: the path curves).
                let bearing = ((f.longitude - prev.longitude) * f.latitude.to_radians().cos())
                    .atan2(f.latitude - prev.latitude)
                    .to_degrees()
                    .rem_euclid(360.0);
                let diff = (bearing - prev.course + 540.0).rem_euclid(360.0) - 180.0;
                assert!(
                    diff.abs() < 10.0,
                    "course {} vs bearing {bearing}",
                    prev.course
                );
                assert!((20.0 * 0.8 - 0.1..=90.0 * 1.2 + 0.1).contains(&f.speed_kmh));
                assert!((7..=14).contains(&f.satellites));
                prev = f;
            }
        }
    }

    #[test]
    fn times_before_the_origin_are_still_distinct_positions() {
        let t = Track::new(14, 1_700_000_000_000);
        let a = t.at(1_699_999_999_900);
        let b = t.at(1_700_000_000_000);
        assert!(metres(&a, &b) > 0.3, "{a:?} {b:?}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        // 2013-04-27 20:56:01, the Wialon spec's example time.
        assert_eq!(civil(1_367_096_161), (2013, 4, 27, 20, 56, 1));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
