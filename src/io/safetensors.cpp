#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"

namespace sdrt {

namespace {

// Real checkpoints have headers of a few hundred KB; anything past this is hostile.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeRow {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},  {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2},  {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      fail(path, ": cannot stat: ", std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(path, ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int e = errno;
        ::close(fd);
        fail(path, ": mmap failed: ", std::strerror(e));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
  }
  ~Mapping() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

TensorInfo parse_entry(const std::string& source, const std::string& name, const nlohmann::json& e,
                       uint64_t data_size) {
  auto where = [&] { return str(source, ": tensor '", name, "': "); };
  if (!e.is_object()) fail(where(), "header entry is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!e.contains(key)) fail(where(), "header entry has no '", key, "'");
  if (!e["dtype"].is_string()) fail(where(), "'dtype' is not a string");
  TensorInfo info;
  info.name = name;
  try {
    info.dtype = dtype_from_name(e["dtype"].get<std::string>());
  } catch (const Error& err) {
    fail(where(), err.what());
  }
  const auto& shape = e["shape"];
  if (!shape.is_array()) fail(where(), "'shape' is not an array");
  if (shape.size() > 8) fail(where(), "rank ", shape.size(), " exceeds the supported maximum of 8");
  uint64_t numel = 1;
  for (const auto& d : shape) {
    if (!d.is_number_unsigned()) fail(where(), "shape ", shape.dump(), " has a non-integer or negative dimension");
    uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || mul_overflows(numel, v, &numel))
      fail(where(), "shape ", shape.dump(), " overflows");
    info.shape.push_back(static_cast<int64_t>(v));
  }
  const auto& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    fail(where(), "'data_offsets' must be two non-negative integers, got ", off.dump());
  info.begin = off[0].get<uint64_t>();
  info.end = off[1].get<uint64_t>();
  if (info.begin > info.end) fail(where(), "data_offsets [", info.begin, ", ", info.end, "] are reversed");
  if (info.end > data_size)
    fail(where(), "data_offsets [", info.begin, ", ", info.end, "] run past the end of the data section (",
         data_size, " bytes; the file may be truncated)");
  uint64_t expected;
  if (mul_overflows(numel, dtype_size(info.dtype), &expected))
    fail(where(), "shape ", shape_str(info.shape), " of ", dtype_name(info.dtype), " overflows");
  if (expected != info.end - info.begin)
    fail(where(), "shape ", shape_str(info.shape), " of ", dtype_name(info.dtype), " needs ", numel, " x ",
         dtype_size(info.dtype), " = ", expected, " bytes, but data_offsets span ", info.end - info.begin);
  return info;
}

}  // namespace

const char* dtype_name(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.name;
  return "?";
}

size_t dtype_size(DType t) {
  for (const auto& r : kDTypes)
    if (r.type == t) return r.size;
  return 0;
}

DType dtype_from_name(const std::string& name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.type;
  fail("unknown dtype '", name, "' (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
}

SafeTensors SafeTensors::open(const std::string& path) {
  auto mapping = std::make_shared<Mapping>(path);
  SafeTensors st = parse({mapping->data(), mapping->size()}, path, mapping);
  st.mapped_ = true;
  return st;
}

namespace {

// Takes the mapped pages of [begin, end) out of the process's resident set; a later read faults
// them back in from the file. Only whole pages inside the range: neighbours may still be needed.
void drop_whole_pages(const uint8_t* begin_ptr, const uint8_t* end_ptr) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(begin_ptr), end = reinterpret_cast<uintptr_t>(end_ptr);
  uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace

void SafeTensors::drop_pages(const TensorInfo& info) const {
  if (mapped_) drop_whole_pages(data_ + info.begin, data_ + info.end);
}

SafeTensors SafeTensors::parse(std::span<const uint8_t> bytes, const std::string& source,
                               std::shared_ptr<const void> owner) {
  if (bytes.size() < 8) fail(source, ": file is ", bytes.size(), " bytes, too short for a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > kMaxHeaderBytes) fail(source, ": header length ", n, " exceeds the ", kMaxHeaderBytes, "-byte limit");
  if (n > bytes.size() - 8)
    fail(source, ": header length ", n, " runs past the end of the file (", bytes.size(),
         " bytes; the file may be truncated)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<ptrdiff_t>(n));
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(source, ": header is not a JSON object");

  SafeTensors st;
  st.path_ = source;
  st.owner_ = std::move(owner);
  st.data_ = bytes.data() + 8 + n;
  st.data_size_ = bytes.size() - 8 - n;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(source, ": __metadata__ is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(source, ": __metadata__ value for '", m.key(), "' is not a string");
        st.metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    st.tensors_[it.key()] = parse_entry(source, it.key(), *it, st.data_size_);
  }
  // Two tensors may not share bytes: a hostile file could otherwise alias weights.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : st.tensors_)
    if (info.end > info.begin) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(source, ": tensors '", by_offset[i - 1]->name, "' [", by_offset[i - 1]->begin, ", ",
           by_offset[i - 1]->end, ") and '", by_offset[i]->name, "' [", by_offset[i]->begin, ", ",
           by_offset[i]->end, ") overlap");
  return st;
}

const TensorInfo& SafeTensors::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, ": missing tensor '", name, "'");
  return it->second;
}

std::span<const uint8_t> SafeTensors::raw(const std::string& name) const {
  const TensorInfo& i = info(name);
  return {data_ + i.begin, static_cast<size_t>(i.end - i.begin)};
}

std::shared_ptr<const uint8_t> SafeTensors::raw_view(const std::string& name) const {
  const TensorInfo& i = info(name);
  const uint8_t* begin = data_ + i.begin;
  if (!mapped_) return std::shared_ptr<const uint8_t>(owner_, begin);
  const uint8_t* end = data_ + i.end;
  return std::shared_ptr<const uint8_t>(begin, [mapping = owner_, end](const uint8_t* b) { drop_whole_pages(b, end); });
}

Tensor SafeTensors::load_f32(const std::string& name) const {
  const TensorInfo& i = info(name);
  const uint8_t* p = data_ + i.begin;
  int64_t n = shape_numel(i.shape);
  if (i.dtype == DType::F32 && reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
    if (!mapped_) return Tensor::wrap(i.shape, const_cast<float*>(reinterpret_cast<const float*>(p)), owner_);
    // The view keeps the mapping alive; when the last reference to it goes (a layer that packed
    // its weights into another layout lets go of the original), its pages leave the resident set
    // even though other tensors still hold the mapping. Without this, packing an F32 file
    // counted its weights twice, once packed and once mapped.
    const uint8_t* end = data_ + i.end;
    std::shared_ptr<const void> view_owner(p, [mapping = owner_, end](const void* begin) {
      drop_whole_pages(static_cast<const uint8_t*>(begin), end);
    });
    return Tensor::wrap(i.shape, const_cast<float*>(reinterpret_cast<const float*>(p)), std::move(view_owner));
  }
  Tensor t = Tensor::empty(i.shape);
  float* out = t.data();
  switch (i.dtype) {
    case DType::F32:
      std::memcpy(out, p, static_cast<size_t>(n) * 4);
      break;
    case DType::F64:
      for (int64_t k = 0; k < n; ++k) {
        double v;
        std::memcpy(&v, p + 8 * k, 8);
        out[k] = static_cast<float>(v);
      }
      break;
    case DType::F16:
      f16_to_float_n(p, out, n);
      break;
    case DType::BF16:
      bf16_to_float_n(p, out, n);
      break;
    default:
      fail(path_, ": tensor '", name, "' has dtype ", dtype_name(i.dtype), ", expected a float type");
  }
  // The converted copy is what the model keeps; the file's pages would otherwise stay
  // resident until the whole mapping closes, holding the weights twice during load.
  drop_pages(i);
  return t;
}

std::vector<int64_t> SafeTensors::load_i64(const std::string& name) const {
  const TensorInfo& i = info(name);
  if (i.dtype != DType::I64 && i.dtype != DType::I32)
    fail(path_, ": tensor '", name, "' has dtype ", dtype_name(i.dtype), ", expected I64 or I32");
  std::vector<int64_t> out(static_cast<size_t>(shape_numel(i.shape)));
  const uint8_t* p = data_ + i.begin;
  for (size_t k = 0; k < out.size(); ++k) {
    if (i.dtype == DType::I64) {
      std::memcpy(&out[k], p + 8 * k, 8);
    } else {
      int32_t v;
      std::memcpy(&v, p + 4 * k, 4);
      out[k] = v;
    }
  }
  return out;
}

std::vector<uint8_t> SafeTensors::load_u8(const std::string& name) const {
  const TensorInfo& i = info(name);
  if (i.dtype != DType::U8) fail(path_, ": tensor '", name, "' has dtype ", dtype_name(i.dtype), ", expected U8");
  auto r = raw(name);
  return {r.begin(), r.end()};
}

void SafeTensorsWriter::add(const std::string& name, const Tensor& t, DType dtype) {
  Entry e{dtype, t.shape(), {}};
  int64_t n = t.numel();
  const float* src = t.data();
  e.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
  switch (dtype) {
    case DType::F32:
      if (n) std::memcpy(e.bytes.data(), src, e.bytes.size());
      break;
    case DType::F16:
    case DType::BF16:
      for (int64_t k = 0; k < n; ++k) {
        uint16_t h = dtype == DType::F16 ? float_to_f16(src[k]) : float_to_bf16(src[k]);
        std::memcpy(e.bytes.data() + 2 * k, &h, 2);
      }
      break;
    default:
      fail("SafeTensorsWriter: cannot store tensor '", name, "' as ", dtype_name(dtype));
  }
  entries_[name] = std::move(e);
}

void SafeTensorsWriter::add_i64(const std::string& name, const Shape& shape, const std::vector<int64_t>& values) {
  SDRT_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "add_i64: shape/value count mismatch");
  Entry e{DType::I64, shape, std::vector<uint8_t>(values.size() * 8)};
  if (!values.empty()) std::memcpy(e.bytes.data(), values.data(), e.bytes.size());
  entries_[name] = std::move(e);
}

void SafeTensorsWriter::add_u8(const std::string& name, const Shape& shape, const std::vector<uint8_t>& values) {
  SDRT_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "add_u8: shape/value count mismatch");
  entries_[name] = Entry{DType::U8, shape, values};
}

void SafeTensorsWriter::add_raw(const std::string& name, DType dtype, const Shape& shape,
                                std::span<const uint8_t> bytes) {
  SDRT_CHECK(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype) == bytes.size(), "add_raw: '", name, "' ",
             shape_str(shape), " ", dtype_name(dtype), " needs ", shape_numel(shape) * dtype_size(dtype),
             " bytes, got ", bytes.size());
  entries_[name] = Entry{dtype, shape, std::vector<uint8_t>(bytes.begin(), bytes.end())};
}

void SafeTensorsWriter::write(const std::string& path) const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] : entries_) {
    header[name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) fail(path, ": cannot open for writing");
    uint64_t n = text.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(len, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, e] : entries_)
      out.write(reinterpret_cast<const char*>(e.bytes.data()), static_cast<std::streamsize>(e.bytes.size()));
    if (!out) fail(path, ": write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, ": cannot rename ", tmp, ": ", std::strerror(errno));
}

}  // namespace sdrt
