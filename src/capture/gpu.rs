//! GPUs through NVML (`libnvidia-ml.so.1`), opened at run time with `dlopen` (libc, already
//! linked: no build-time dependency on the NVIDIA driver). Without the library: no GPUs, no
//! error, no message. The conversion of NVML's raw values is in pure functions, tested on a
//! recorded sample.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use crate::record::environment::Gpu;

/// One GPU's utilisation at one moment (for the system-metrics sampler).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// Busy time over NVML's last sample period, percent.
    pub utilization_percent: f64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Total memory.
    pub memory_total_bytes: u64,
}

/// `nvmlMemory_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawMemory {
    /// Total memory, bytes.
    pub total: u64,
    /// Free memory, bytes.
    pub free: u64,
    /// Used memory, bytes.
    pub used: u64,
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RawUtilization {
    /// GPU busy percent.
    pub gpu: c_uint,
    /// Memory controller busy percent.
    pub memory: c_uint,
}

/// NVML's CUDA version integer (`1000 * major + 10 * minor`, 12020) as `12.2`.
pub fn cuda_version(v: c_int) -> Option<String> {
    (v > 0).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// A NUL-terminated NVML string buffer as text.
pub fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// One GPU's record from NVML's raw answers.
pub fn gpu_of(
    index: u32,
    name: &[c_char],
    driver: Option<&str>,
    cuda: c_int,
    mem: Option<RawMemory>,
) -> Gpu {
    Gpu {
        index,
        model: c_text(name),
        driver: driver.map(str::to_string),
        cuda: cuda_version(cuda),
        memory_bytes: mem.map(|m| m.total),
    }
}

/// One GPU's sample from NVML's raw answers.
pub fn sample_of(index: u32, util: RawUtilization, mem: RawMemory) -> GpuSample {
    GpuSample {
        index,
        utilization_percent: f64::from(util.gpu.min(100)),
        memory_used_bytes: mem.used,
        memory_total_bytes: mem.total,
    }
}

/// Parses `nvidia-smi --query-gpu=index,name,driver_version,memory.total
/// --format=csv,noheader,nounits` (memory in MiB).
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() < 4 {
                return None;
            }
            Some(Gpu {
                index: f[0].parse().ok()?,
                model: f[1].to_string(),
                driver: Some(f[2].to_string()).filter(|s| !s.is_empty()),
                cuda: None,
                memory_bytes: f[3].parse::<u64>().ok().map(|mib| mib * 1024 * 1024),
            })
        })
        .collect()
}

type Device = *mut c_void;
type Ret = c_int;

/// The NVML functions repro calls, resolved from the library.
struct Nvml {
    handle: *mut c_void,
    shutdown: unsafe extern "C" fn() -> Ret,
    count: unsafe extern "C" fn(*mut c_uint) -> Ret,
    by_index: unsafe extern "C" fn(c_uint, *mut Device) -> Ret,
    name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret,
    memory: unsafe extern "C" fn(Device, *mut RawMemory) -> Ret,
    utilization: unsafe extern "C" fn(Device, *mut RawUtilization) -> Ret,
    driver: unsafe extern "C" fn(*mut c_char, c_uint) -> Ret,
    cuda: unsafe extern "C" fn(*mut c_int) -> Ret,
}

/// A resolved symbol as the function pointer type `F`.
///
/// # Safety
/// `p` must be a function with exactly `F`'s signature.
unsafe fn cast<F: Copy>(p: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: same size (checked), and the caller vouches for the signature.
    unsafe { std::mem::transmute_copy(&p) }
}

impl Nvml {
    /// Opens and initialises NVML; `None` when the library or a symbol is absent or init fails.
    fn open() -> Option<Nvml> {
        let lib = c"libnvidia-ml.so.1";
        // SAFETY: dlopen with a valid C string; a null handle is checked.
        let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return None;
        }
        let sym = |n: &CStr| {
            // SAFETY: handle is a live dlopen handle; n is NUL-terminated.
            let p = unsafe { libc::dlsym(handle, n.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let resolved = (|| {
            let init = sym(c"nvmlInit_v2")?;
            // SAFETY (all transmutes): the symbols are NVML's documented C functions with
            // exactly these signatures.
            unsafe {
                let nvml = Nvml {
                    handle,
                    shutdown: cast(sym(c"nvmlShutdown")?),
                    count: cast(sym(c"nvmlDeviceGetCount_v2")?),
                    by_index: cast(sym(c"nvmlDeviceGetHandleByIndex_v2")?),
                    name: cast(sym(c"nvmlDeviceGetName")?),
                    memory: cast(sym(c"nvmlDeviceGetMemoryInfo")?),
                    utilization: cast(sym(c"nvmlDeviceGetUtilizationRates")?),
                    driver: cast(sym(c"nvmlSystemGetDriverVersion")?),
                    cuda: cast(sym(c"nvmlSystemGetCudaDriverVersion_v2")?),
                };
                let init: unsafe extern "C" fn() -> Ret = cast(init);
                (init() == 0).then_some(nvml)
            }
        })();
        if resolved.is_none() {
            // SAFETY: handle came from dlopen and nothing resolved from it is kept.
            unsafe { libc::dlclose(handle) };
        }
        resolved
    }

    fn devices(&self) -> Vec<(u32, Device)> {
        let mut n: c_uint = 0;
        // SAFETY: NVML is initialised; the out-pointers are valid for the call.
        if unsafe { (self.count)(&mut n) } != 0 {
            return Vec::new();
        }
        (0..n)
            .filter_map(|i| {
                let mut d: Device = std::ptr::null_mut();
                (unsafe { (self.by_index)(i, &mut d) } == 0).then_some((i, d))
            })
            .collect()
    }

    fn memory(&self, d: Device) -> Option<RawMemory> {
        let mut m = RawMemory::default();
        // SAFETY: d is a handle NVML returned; m is a valid nvmlMemory_t.
        (unsafe { (self.memory)(d, &mut m) } == 0).then_some(m)
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: NVML was initialised by open; the handle is closed once.
        unsafe {
            (self.shutdown)();
            libc::dlclose(self.handle);
        }
    }
}

/// The GPUs NVML sees (model, driver, CUDA version, memory); empty without NVML.
pub fn gpus() -> Vec<Gpu> {
    let Some(nvml) = Nvml::open() else {
        return Vec::new();
    };
    let mut buf = [0 as c_char; 96];
    // SAFETY: buf is writable for its length.
    let driver = (unsafe { (nvml.driver)(buf.as_mut_ptr(), buf.len() as c_uint) } == 0)
        .then(|| c_text(&buf));
    let mut cuda: c_int = 0;
    // SAFETY: cuda is a valid int.
    if unsafe { (nvml.cuda)(&mut cuda) } != 0 {
        cuda = 0;
    }
    nvml.devices()
        .into_iter()
        .map(|(i, d)| {
            let mut name = [0 as c_char; 96];
            // SAFETY: name is writable for its length; d is NVML's handle.
            unsafe { (nvml.name)(d, name.as_mut_ptr(), name.len() as c_uint) };
            gpu_of(i, &name, driver.as_deref(), cuda, nvml.memory(d))
        })
        .collect()
}

/// Each GPU's utilisation and memory in use now; empty without NVML.
pub fn sample() -> Vec<GpuSample> {
    let Some(nvml) = Nvml::open() else {
        return Vec::new();
    };
    nvml.devices()
        .into_iter()
        .filter_map(|(i, d)| {
            let mut u = RawUtilization::default();
            // SAFETY: u is a valid nvmlUtilization_t; d is NVML's handle.
            let ok = unsafe { (nvml.utilization)(d, &mut u) } == 0;
            Some(sample_of(i, ok.then_some(u)?, nvml.memory(d)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbuf(s: &str) -> Vec<c_char> {
        let mut v: Vec<c_char> = s.bytes().map(|b| b as c_char).collect();
        v.extend([0 as c_char; 8]);
        v
    }

    /// Values an A100 host returned (driver 535.104.05, CUDA 12.2, 40 GiB).
    #[test]
    fn recorded_nvml_values_convert() {
        let g = gpu_of(
            0,
            &cbuf("NVIDIA A100-SXM4-40GB"),
            Some("535.104.05"),
            12020,
            Some(RawMemory {
                total: 42_949_672_960,
                free: 42_314_825_728,
                used: 634_847_232,
            }),
        );
        assert_eq!(g.model, "NVIDIA A100-SXM4-40GB");
        assert_eq!(g.cuda.as_deref(), Some("12.2"));
        assert_eq!(g.driver.as_deref(), Some("535.104.05"));
        assert_eq!(g.memory_bytes, Some(42_949_672_960));
        assert_eq!(cuda_version(11080).as_deref(), Some("11.8"));
        assert_eq!(cuda_version(0), None);
        let s = sample_of(
            1,
            RawUtilization {
                gpu: 87,
                memory: 40,
            },
            RawMemory {
                total: 42_949_672_960,
                free: 0,
                used: 17_179_869_184,
            },
        );
        assert_eq!(s.index, 1);
        assert_eq!(s.utilization_percent, 87.0);
        assert_eq!(s.memory_used_bytes, 17_179_869_184);
    }

    #[test]
    fn recorded_nvidia_smi_output_parses() {
        let out = "0, NVIDIA A100-SXM4-40GB, 535.104.05, 40960\n1, NVIDIA A100-SXM4-40GB, 535.104.05, 40960\n";
        let g = parse_nvidia_smi(out);
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].index, 1);
        assert_eq!(g[0].memory_bytes, Some(40960 * 1024 * 1024));
        assert_eq!(g[0].driver.as_deref(), Some("535.104.05"));
    }

    #[test]
    fn no_nvml_here_means_no_gpus_and_no_error() {
        // This machine has no NVIDIA driver; where it has one the lists agree in length.
        assert_eq!(gpus().len(), sample().len());
    }
}
