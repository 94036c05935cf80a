// Mock of the Poplar SDK declarations Saltatory uses, for compile checks only; not the SDK.
#pragma once

#include <cstddef>
#include <poplar/ArrayRef.hpp>
#include <poplar/DataStream.hpp>
#include <poplar/DebugContext.hpp>
#include <poplar/Device.hpp>
#include <poplar/GraphElements.hpp>
#include <poplar/OptionFlags.hpp>
#include <poplar/StringRef.hpp>
#include <poplar/Target.hpp>
#include <poplar/Tensor.hpp>
#include <poplar/Type.hpp>
#include <poplar/TypeTraits.hpp>
#include <string>
#include <type_traits>

namespace poplar {

enum class CodeletFileType {
  PreprocessedAsmSource,
  AsmSource,
  CSource,
  CppSource,
  IrSource,
  Object,
  Auto
};

enum class VariableMappingMethod { NONE, LINEAR };

struct replication_factor {
  explicit replication_factor(unsigned r);
  unsigned value;
};

/// A graph program to be executed on the IPU.
class Graph {
 public:
  /// A tensor to connect to a vertex field (addVertex's connection list).
  struct ConnectionDesc {
    ConnectionDesc(StringRef field, Tensor t);
    ConnectionDesc(StringRef field, ArrayRef<Tensor> tt);
  };

  Graph(const Target& target, replication_factor r = replication_factor(1));
  Graph(const Device& device, replication_factor r = replication_factor(1));
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;
  ~Graph();
  const Target& getTarget() const;

  bool addCodelets(StringRef src, CodeletFileType type = CodeletFileType::Auto,
                   StringRef compileFlags = "", StringRef targetName = "");
  void addCodelets(ArrayRef<std::string> xs, StringRef compileFlags = "",
                   StringRef targetName = "");

  Tensor addVariable(const Type& type, ArrayRef<std::size_t> shape,
                     const DebugContext& debugContext = {});
  Tensor addVariable(const Type& type, ArrayRef<std::size_t> shape,
                     VariableMappingMethod mappingMethod, const DebugContext& debugContext = {});
  template <typename T>
  Tensor addConstant(const Type& type, ArrayRef<std::size_t> shape, T val,
                     const DebugContext& debugContext = {"<const>"},
                     typename std::enable_if<TypeTraits::isSimpleType<T>()>::type* = nullptr);
  template <typename T>
  Tensor addConstant(const Type& type, ArrayRef<std::size_t> shape, ArrayRef<T> values,
                     const DebugContext& debugContext = {"<const>"});
  template <typename T>
  Tensor addConstant(const Type& type, ArrayRef<std::size_t> shape, const T* values,
                     const DebugContext& debugContext = {"<const>"});

  void setTileMapping(VertexRef v, unsigned tileNum);
  void setTileMapping(const Tensor& t, unsigned tileNum);

  ComputeSet addComputeSet(const DebugContext& debugContext = {});
  VertexRef addVertex(ComputeSet cs, StringRef vertexType);
  VertexRef addVertex(ComputeSet cs, StringRef vertexType, ArrayRef<ConnectionDesc> connections);
  void connect(FieldRef field, const Tensor& tensor);
  void connect(FieldRef field, ArrayRef<Tensor> tensors);
  template <typename T>
  void connect(FieldRef field, T v,
               typename std::enable_if<TypeTraits::isSimpleType<T>()>::type* = nullptr);
  void setFieldSize(FieldRef field, std::size_t size);
  template <typename T>
  void setInitialValue(const FieldRef field, T val,
                       typename std::enable_if<TypeTraits::isSimpleType<T>()>::type* = nullptr);
  template <typename T>
  void setInitialValue(const FieldRef field, ArrayRef<T> values);
  template <typename T>
  void setInitialValue(const Tensor& t, T val,
                       typename std::enable_if<TypeTraits::isSimpleType<T>()>::type* = nullptr);
  template <typename T>
  void setInitialValue(const Tensor& t, ArrayRef<T> values);

  DataStream addHostToDeviceFIFO(
      StringRef handle, const Type& elementType, std::size_t numElements,
      ReplicatedStreamMode replicatedMode = ReplicatedStreamMode::REPLICATE,
      const OptionFlags& options = {});
  DataStream addDeviceToHostFIFO(StringRef handle, const Type& elementType, std::size_t numElements,
                                 const OptionFlags& options = {});
};

}  // namespace poplar
