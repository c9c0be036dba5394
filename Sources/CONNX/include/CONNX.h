/* Umbrella header of the CONNX module: the protobuf-c bindings generated from
 * Formats/onnx-subset.proto (regenerate with Tools/regenerate-onnx-c.sh). */
#ifndef CONNX_H
#define CONNX_H

#include <protobuf-c/protobuf-c.h>
#include "onnx-subset.pb-c.h"

#endif
