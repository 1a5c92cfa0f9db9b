//! The whitening initialisation against NumPy: the non-centred patch covariance, its
//! eigendecomposition (`numpy.linalg.eigh`, reversed to descending order, as airbench
//! flips PyTorch's ascending one) and the scaled filters, for a small fixed input.
//!
//! The expected values were printed by this NumPy 2.4 script (eigenvectors compared up to
//! sign, which LAPACK does not fix):
//!
//! ```python
//! import numpy as np
//! n, c, h, w, k = 3, 3, 5, 5, 2
//! x = (((np.arange(n * c * h * w) * 7919) % 257).astype(np.float32) / 64 - 2).reshape(n, c, h, w)
//! p = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # n, c, oh, ow, k, k
//! p = p.transpose(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).astype(np.float64)
//! cov = p.T @ p / len(p)
//! vals, vecs = np.linalg.eigh(cov, UPLO="U")
//! vals, vecs = vals[::-1], vecs[:, ::-1].T
//! filters = vecs / np.sqrt(vals + 5e-4)[:, None]
//! ```

use models::whitening::{patch_moments, PatchWhitening};

const SHAPE: [usize; 4] = [3, 3, 5, 5];

fn images() -> Vec<f32> {
    (0..SHAPE.iter().product::<usize>())
        .map(|i| ((i * 7919) % 257) as f32 / 64.0 - 2.0)
        .collect()
}

/// `cov[0][0]`, `cov[0][1]`, `cov[11][11]` from NumPy.
const NUMPY_COVARIANCE: [f64; 3] = [1.5949910481770833, -0.01763916015625, 1.0843149820963542];

/// Descending.
const NUMPY_EIGENVALUES: [f64; 12] = [
    5.795000847853626,
    4.652839023109109,
    1.4915204662744346,
    1.2055941889186366,
    0.7091561958224787,
    0.6724482295105213,
    0.4817146797810697,
    0.4373429529634167,
    0.32681783994936436,
    0.2910171863146924,
    0.09841595304057563,
    0.025657867777180002,
];

const NUMPY_EIGENVECTORS: [[f64; 12]; 12] = [
    [
        -0.22627659030759528,
        0.2455603287739024,
        -0.4063093286782968,
        0.11826220438487016,
        -0.1682427875027754,
        -0.4591560246313788,
        0.10072237791463856,
        -0.37606243591980076,
        0.3102602938611623,
        0.21355547285922327,
        0.30497532066747823,
        0.28956973301497513,
    ],
    [
        0.35804848178261767,
        0.2666084444990974,
        0.20950226122008525,
        0.3584240158055794,
        -0.4298617933702793,
        0.043288324717386015,
        -0.4529507478206048,
        -0.26661799402907005,
        0.089315261177667,
        -0.33707230609436,
        0.13620277302769915,
        -0.15909595692313044,
    ],
    [
        -0.39130067982978,
        0.22066177922081953,
        -0.3684087102683945,
        0.12409917305315954,
        0.2948971803417149,
        -0.03703902687124709,
        -0.33254579081716473,
        0.43236687126200235,
        0.10781435392382985,
        -0.4116852508324033,
        0.14963167753889184,
        -0.24021699393159188,
    ],
    [
        0.41264863081935077,
        0.07406561298201665,
        -0.1675961929256396,
        0.420601444295932,
        0.43142481056424276,
        -0.4210363500323359,
        0.24010959521168718,
        -0.1107948811278389,
        -0.25354363400246027,
        -0.02647974654684874,
        -0.21774292966668984,
        -0.2711396324286303,
    ],
    [
        0.3869342251301893,
        -0.21014358295136235,
        0.0919766903901076,
        -0.548056246705442,
        0.31921620599178746,
        -0.37948034858209434,
        -0.2758621160411636,
        -0.05471664070671806,
        0.2439660524789558,
        -0.22683089286607258,
        0.21685103845581666,
        0.11959104596341358,
    ],
    [
        0.35306284203291133,
        -0.1352409148042109,
        -0.3086428345478432,
        0.08353661656891546,
        -0.40927141352814406,
        -0.22196128732390047,
        -0.15804725485209994,
        0.6234004076094712,
        -0.07616220916159884,
        0.1848248141227634,
        -0.11654211178540082,
        0.2662665865218834,
    ],
    [
        0.15275077236273696,
        0.11911197215383221,
        -0.07342214619217904,
        -0.29043892963988566,
        -0.3454158852091194,
        -0.05199690400438589,
        0.554063696560554,
        0.18107611654391192,
        0.20691733101587984,
        -0.15164068275043166,
        0.21753153609245598,
        -0.5457227839169599,
    ],
    [
        0.3569153466242563,
        -0.036582073606170454,
        -0.6563069071409575,
        -0.10500868982701428,
        0.11443847604452238,
        0.5928258730977626,
        -0.02351374318736435,
        -0.24180201695621492,
        0.03194789398137803,
        -0.002854978950734101,
        0.05817405605033628,
        0.03917619387268489,
    ],
    [
        0.1011281746706754,
        0.6396275978094733,
        0.05816391890470096,
        -0.32078611212897656,
        0.10975354540446122,
        0.008166643666477534,
        -0.28367498703143795,
        0.06446841448088161,
        -0.12819011987242934,
        0.5562234199293632,
        -0.03809007174959969,
        -0.22439829411958345,
    ],
    [
        0.09532247774049665,
        0.5611759639977406,
        0.06658290409657913,
        -0.1526654882463065,
        0.027935748711848472,
        0.05397468843784132,
        0.30597645050551264,
        0.08940473219548896,
        -0.15762268607998467,
        -0.44862145308754164,
        -0.1640946133735543,
        0.5384361608608637,
    ],
    [
        0.22971645652145908,
        0.09552775242468545,
        0.28089587674287697,
        0.36901979224504233,
        0.31493623707267204,
        0.24136309457492452,
        0.18018235706313854,
        0.3037523658706068,
        0.4621503268284249,
        0.22654537497678298,
        0.3805962685647535,
        0.17633856047581983,
    ],
    [
        0.005414225081252985,
        -0.0574361208202967,
        0.025289787092742377,
        0.011331171892702609,
        0.0001845268337811401,
        -0.0019804225791899923,
        0.03569615955470012,
        0.031331067006048256,
        -0.6751569563146378,
        0.0025251397098343766,
        0.7308181675492331,
        0.0608729472193586,
    ],
];

/// Filters 0 and 11 (largest and smallest eigenvalue), eps 5e-4.
const NUMPY_FILTERS: [[f64; 12]; 2] = [
    [
        -0.09399270299789747,
        0.10200294700894971,
        -0.16877623975073816,
        0.04912476468517226,
        -0.06988612624836756,
        -0.19072815174652138,
        0.04183892173601854,
        -0.1562120270595628,
        0.12887857119152352,
        0.08870849656496155,
        0.1266832538806584,
        0.12028394928285886,
    ],
    [
        0.03347612156625052,
        -0.3551271943849693,
        0.15636660360365223,
        0.07006056860872299,
        0.001140928318861687,
        -0.01224494106147668,
        0.2207091428169571,
        0.19371980147749682,
        -4.174491456616343,
        0.015612923849597218,
        4.5186443955597015,
        0.376377071626953,
    ],
];

/// `a` equals `b` or `-b` to `tol`, element-wise; returns the sign that matched.
fn assert_close_up_to_sign(a: &[f64], b: &[f64], tol: f64, what: &str) -> f64 {
    let sign = if a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() >= 0.0 {
        1.0
    } else {
        -1.0
    };
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - sign * y).abs() <= tol,
            "{what}[{i}]: {x} vs NumPy's {} (sign {sign})",
            sign * y
        );
    }
    sign
}

#[test]
fn patch_covariance_matches_numpy() {
    let moments = patch_moments(&images(), SHAPE, 2).unwrap();
    assert_eq!((moments.dim, moments.patches), (12, 3 * 4 * 4));
    let m = &moments.matrix;
    for (ours, numpy) in [m[0], m[1], m[11 * 12 + 11]].iter().zip(NUMPY_COVARIANCE) {
        assert!((ours - numpy).abs() < 1e-13, "{ours} vs {numpy}");
    }
    // Symmetric.
    for a in 0..12 {
        for b in 0..12 {
            assert_eq!(m[a * 12 + b], m[b * 12 + a]);
        }
    }
}

#[test]
fn eigendecomposition_matches_numpy_eigh_up_to_sign() {
    let whitening = PatchWhitening::of(&patch_moments(&images(), SHAPE, 2).unwrap()).unwrap();
    for (i, (ours, numpy)) in whitening
        .eigenvalues
        .iter()
        .zip(NUMPY_EIGENVALUES)
        .enumerate()
    {
        assert!(
            (ours - numpy).abs() < 1e-12,
            "eigenvalue {i}: {ours} vs {numpy}"
        );
    }
    for (i, (ours, numpy)) in whitening
        .eigenvectors
        .iter()
        .zip(NUMPY_EIGENVECTORS)
        .enumerate()
    {
        assert_close_up_to_sign(ours, &numpy, 1e-10, &format!("eigenvector {i}"));
        // The stated sign convention: the largest-magnitude component is positive.
        let largest = ours
            .iter()
            .copied()
            .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        assert!(largest > 0.0, "eigenvector {i}: {ours:?}");
    }
}

#[test]
fn filters_are_scaled_eigenvectors_then_their_negatives() {
    let whitening = PatchWhitening::of(&patch_moments(&images(), SHAPE, 2).unwrap()).unwrap();
    assert_eq!(whitening.filter_shape(), [24, 3, 2, 2]);
    let filters = whitening.filters(5e-4);
    assert_eq!(filters.len(), 24 * 12);
    let row = |r: usize| -> Vec<f64> {
        filters[r * 12..(r + 1) * 12]
            .iter()
            .map(|&x| x as f64)
            .collect()
    };
    for (ours, numpy) in [(0, NUMPY_FILTERS[0]), (11, NUMPY_FILTERS[1])] {
        // f32 filters: relative 1e-6 of the largest value.
        let tol = 1e-6 * numpy.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert_close_up_to_sign(&row(ours), &numpy, tol, &format!("filter {ours}"));
        assert_close_up_to_sign(
            &row(ours + 12),
            &numpy,
            tol,
            &format!("filter {}", ours + 12),
        );
        assert_eq!(
            row(ours + 12)[0],
            -row(ours)[0],
            "filter {} is -filter {ours}",
            ours + 12
        );
    }
}

#[test]
fn whitened_patches_have_the_promised_covariance() {
    // W Σ Wᵀ = diag(λ / (λ + eps)) for the first 12 filters: decorrelated responses.
    let moments = patch_moments(&images(), SHAPE, 2).unwrap();
    let whitening = PatchWhitening::of(&moments).unwrap();
    let eps = 5e-4;
    let scaled: Vec<Vec<f64>> = whitening
        .eigenvalues
        .iter()
        .zip(&whitening.eigenvectors)
        .map(|(l, v)| v.iter().map(|x| x / (l + eps).sqrt()).collect())
        .collect();
    for (i, wi) in scaled.iter().enumerate() {
        for (j, wj) in scaled.iter().enumerate() {
            let mut value = 0.0;
            for (a, wa) in wi.iter().enumerate() {
                for (b, wb) in wj.iter().enumerate() {
                    value += wa * moments.matrix[a * 12 + b] * wb;
                }
            }
            let lambda = whitening.eigenvalues[i];
            let expected = if i == j { lambda / (lambda + eps) } else { 0.0 };
            assert!((value - expected).abs() < 1e-10, "({i}, {j}): {value}");
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(patch_moments(&images(), [3, 3, 5, 4], 2).is_err());
    assert!(patch_moments(&images()[..75], [1, 3, 5, 5], 6).is_err());
    assert!(patch_moments(&[], [0, 3, 5, 5], 2).is_err());
    let mut nan = images();
    nan[7] = f32::NAN;
    let moments = patch_moments(&nan, SHAPE, 2).unwrap();
    assert!(PatchWhitening::of(&moments).is_err());
}
