// safetensors: an 8-byte little-endian header length N, N bytes of JSON describing every
// tensor (dtype, shape, byte range), then the raw data. Files are memory-mapped and the
// header is validated completely before any tensor is touched: a truncated or hostile file
// fails with an error that names the file and the offending tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sdrt {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType t);
size_t dtype_size(DType t);
// Throws on names the format does not define.
DType dtype_from_name(const std::string& name);

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

class SafeTensors {
 public:
  // Memory-maps and validates `path`.
  static SafeTensors open(const std::string& path);
  // Validates an in-memory image of a file; `source` names it in errors. The bytes are
  // referenced, not copied: `owner` must keep them alive.
  static SafeTensors parse(std::span<const uint8_t> bytes, const std::string& source,
                           std::shared_ptr<const void> owner = nullptr);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // Float tensors of any float dtype, converted to float32. F32 data is returned
  // zero-copy (a view into the mapping) when it is suitably aligned.
  Tensor load_f32(const std::string& name) const;
  std::vector<int64_t> load_i64(const std::string& name) const;
  std::vector<uint8_t> load_u8(const std::string& name) const;
  std::span<const uint8_t> raw(const std::string& name) const;
  // The tensor's bytes without a copy (e.g. int8 weights), keeping the mapping alive; when the
  // last reference goes, the tensor's pages leave the resident set, as load_f32's F32 views do.
  std::shared_ptr<const uint8_t> raw_view(const std::string& name) const;

 private:
  // Releases the mapped pages of a tensor whose data has been copied out.
  void drop_pages(const TensorInfo& info) const;

  std::string path_;
  std::shared_ptr<const void> owner_;
  bool mapped_ = false;  // true when the bytes are a private file mapping of our own
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
};

// Writes a safetensors file: tensors sorted by name, 8-byte aligned data section.
class SafeTensorsWriter {
 public:
  // Stores `t` converted to `dtype` (F32, F16 or BF16).
  void add(const std::string& name, const Tensor& t, DType dtype = DType::F32);
  void add_i64(const std::string& name, const Shape& shape, const std::vector<int64_t>& values);
  void add_u8(const std::string& name, const Shape& shape, const std::vector<uint8_t>& values);
  // Stores `bytes` as they are, as a tensor of `dtype` and `shape` (e.g. int8 weights, or a tensor
  // copied from another file without conversion).
  void add_raw(const std::string& name, DType dtype, const Shape& shape, std::span<const uint8_t> bytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes to a temporary file and renames it, so a crash never leaves a half-written file.
  void write(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sdrt
