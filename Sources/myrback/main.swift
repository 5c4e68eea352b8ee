// myrback: the MyriXen backend (the emulated driver domain of one host). The command itself
// lives in the library (BackendCommand).
import MyriXen
#if canImport(Glibc)
import Glibc
#endif

exit(BackendCommand.main(CommandLine.arguments.dropFirst()))
